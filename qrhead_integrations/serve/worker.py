"""One model worker thread behind a bounded queue; requests over the same documents share one encoding.

The scorer (its model and its Hugging Face tokenizer, which is not thread-safe) is only ever used from
the worker thread. The worker takes everything that is queued (up to ``Limits.max_group`` requests),
checks the token limits and ranks them through the library's one batching path
(:func:`~qrhead_integrations.engine.batch.iter_rank_jobs`): requests whose documents are identical share
one encoding when the documents fit one prompt; longer documents are ranked request by request.

Every request's result is exactly ``scorer.rank(query, documents)``, whatever else was queued:
concurrent clients get the numbers that sequential calls, the Python API, the CLI and the framework
adapters give.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..engine.batch import AbandonedError, RankJob, iter_rank_jobs
from .config import Limits

logger = logging.getLogger("qrhead_integrations.serve")

_STOP = object()


class LimitExceededError(ValueError):
    """A request is over one of the server's :class:`Limits` (HTTP 413).

    ``limit`` is the limit's name (``max_documents``...), ``value`` what the request had, ``maximum``
    the limit's value.
    """

    def __init__(self, limit: str, value: int, maximum: int, what: str):
        super().__init__(f"request has {value} {what}; the limit ({limit}) is {maximum}")
        self.limit = limit
        self.value = value
        self.maximum = maximum


class OverloadedError(RuntimeError):
    """The worker's queue is full, or the worker is stopped (HTTP 503)."""




@dataclass
class RerankJob:
    """One request: a query and its documents (strings or mappings with ``text`` and ``title``)."""

    query: str
    documents: Sequence[Any]
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RerankOutcome:
    """A served request: every document best first (``RankedPassage`` objects), and token counts."""

    ranking: list[Any]
    query_tokens: int = 0
    document_tokens: int = 0
    shared: bool = False  # the documents' encoding also served other requests

    @property
    def total_tokens(self) -> int:
        return self.query_tokens + self.document_tokens


def document_key(doc: Any) -> tuple[str, str]:
    """``(text, title)`` of a document given as a string or a mapping (what the scorer reads)."""
    if isinstance(doc, str):
        return doc, ""
    return doc["text"], doc.get("title") or ""


def check_query(query: Any) -> str:
    """The query as the scorer reads it; ``TypeError``/``ValueError`` as the scorer would raise."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, not {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty")
    return query.strip()


def rank_groups(scorer: Any, requests: Sequence[tuple[str, Sequence[Any]]],
                skip: Callable[[int], bool] | None = None,
                ) -> Iterator[tuple[int, list[Any] | BaseException, bool]]:
    """Rank many ``(query, documents)`` pairs through the library's one batching path
    (:func:`~qrhead_integrations.engine.batch.iter_rank_jobs`): requests over the same documents share one
    encoding when the documents fit one prompt, else each is scored on its own.

    Yields ``(position, ranking or exception, shared)`` as each request is done, grouped by documents
    (first appearance order). ``ranking`` is every document best first, exactly what
    ``scorer.rank(query, documents)`` returns; ``shared`` tells whether other requests of the batch had the
    same documents. ``skip(position)``, asked just before a request's turn, drops requests nobody waits
    for any more (they get :class:`AbandonedError`). Used by the server's worker and by the Ray Data job.
    """
    same: dict[tuple[tuple[str, str], ...], int] = {}
    keys: list[tuple[tuple[str, str], ...] | None] = []
    for _, docs in requests:
        try:
            key = tuple(document_key(d) for d in docs)
        except (KeyError, TypeError, AttributeError):
            key = None  # the scorer's passage check names the problem
        keys.append(key)
        if key is not None:
            same[key] = same.get(key, 0) + 1
    jobs = [RankJob(query, list(docs) if docs is not None else docs) for query, docs in requests]
    for pos, result in iter_rank_jobs(scorer, jobs, skip=skip):
        key = keys[pos]
        yield pos, result, key is not None and same[key] > 1


class RerankWorker:
    """Queue + one model thread. ``submit`` is thread-safe; the scorer is used by the thread only.

    ``scorer`` needs ``encode(documents)`` (whose result has ``rank(query, top_k=None)``) and
    ``count_tokens(text)``: a :class:`~qrhead_integrations.QRHeadScorer`.
    """

    def __init__(self, scorer: Any, limits: Limits | None = None, *, name: str = "qrhead-serve-worker"):
        self.scorer = scorer
        self.limits = limits or Limits()
        self.max_query_tokens = self.limits.max_query_tokens or getattr(scorer, "max_query_tokens", None)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._abandoned: set[Future] = set()
        self._stats = {"requests": 0, "completed": 0, "failed": 0, "rejected": 0, "cancelled": 0,
                       "abandoned": 0, "encodings": 0, "shared_requests": 0, "busy_seconds": 0.0}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> RerankWorker:
        """Start the model thread (idempotent)."""
        with self._lock:
            if not self._started and not self._stopping:
                self._started = True
                self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the requests in progress, fail those still queued (503), and end the thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            started = self._started
        self._queue.put(_STOP)
        if started:
            self._thread.join(timeout)
        self._drain_after_stop()

    @property
    def stopped(self) -> bool:
        return self._stopping

    @property
    def alive(self) -> bool:
        return self._started and self._thread.is_alive() and not self._stopping

    @property
    def pending(self) -> int:
        """Requests queued or being served."""
        return self._pending

    def stats(self) -> dict[str, Any]:
        """Counters since start: requests, completed, failed, rejected (queue full), cancelled (dropped
        while queued), abandoned (their client went away; dropped when the worker reached them), encodings
        (distinct document lists scored per batch), shared_requests (requests whose batch held another
        request over the same documents: one encoding when they fit one prompt), busy_seconds (time the
        model thread spent working), pending."""
        with self._lock:
            out = dict(self._stats)
            out["pending"] = self._pending
        out["busy_seconds"] = round(out["busy_seconds"], 3)
        return out

    # --- submitting ---------------------------------------------------------------------------
    def submit(self, query: str, documents: Sequence[Any]) -> Future:
        """Queue a request; the future gets a :class:`RerankOutcome` or the request's error.

        Raises at once: ``TypeError``/``ValueError`` for a bad query, :class:`LimitExceededError` for too
        many documents, :class:`OverloadedError` when the queue is full or the worker stopped.
        """
        check_query(query)
        documents = list(documents)
        if self.limits.max_documents is not None and len(documents) > self.limits.max_documents:
            raise LimitExceededError("max_documents", len(documents), self.limits.max_documents, "documents")
        job = RerankJob(query, documents)
        with self._lock:
            if self._stopping:
                raise OverloadedError("the server is shutting down")
            if self._pending >= self.limits.max_queue:
                self._stats["rejected"] += 1
                raise OverloadedError(
                    f"server overloaded: {self._pending} requests queued (max_queue={self.limits.max_queue}); "
                    "retry later")
            self._pending += 1
            self._stats["requests"] += 1
        job.future.add_done_callback(self._done)
        self.start()
        self._queue.put(job)
        return job.future

    async def arank(self, query: str, documents: Sequence[Any]) -> RerankOutcome:
        """:meth:`submit` for asyncio: awaiting does not block the event loop; cancelling the await
        (e.g. the client went away) frees the request's slot: it is dropped if the worker has not
        reached it yet, and a request already being scored finishes."""
        future = self.submit(query, documents)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            self.abandon(future)
            raise

    def abandon(self, future: Future) -> None:
        """Nobody waits for ``future`` any more: drop its request if it is queued, or when the worker
        reaches it within a batch; a request being scored finishes (its slot is freed then)."""
        if future.cancel():
            return
        with self._lock:
            if not future.done():
                self._abandoned.add(future)

    def rank(self, query: str, documents: Sequence[Any], timeout: float | None = None) -> RerankOutcome:
        """Blocking :meth:`submit` (from any thread but the worker's)."""
        return self.submit(query, documents).result(timeout)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1
            if future in self._abandoned:
                self._abandoned.discard(future)
                self._stats["abandoned"] += 1
            elif future.cancelled():
                self._stats["cancelled"] += 1
            elif future.exception() is not None:
                self._stats["failed"] += 1
            else:
                self._stats["completed"] += 1

    # --- the model thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            jobs = [item]
            stop = False
            while len(jobs) < self.limits.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                jobs.append(item)
            if self._stopping:  # stop() was called while these waited: refuse them (503), end the thread
                for job in jobs:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(OverloadedError("the server is shutting down"))
                return
            started = time.perf_counter()
            try:
                self._serve(jobs)
            except BaseException as exc:  # never let the thread die with requests waiting
                logger.exception("model worker failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            finally:
                with self._lock:
                    self._stats["busy_seconds"] += time.perf_counter() - started
            if stop:
                return

    def _serve(self, jobs: list[RerankJob]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        counts: dict[str, int] = {}

        def tokens(text: str) -> int:
            if text not in counts:
                counts[text] = self.scorer.count_tokens(text)
            return counts[text]

        ready: list[tuple[RerankJob, int, int]] = []
        for job in live:
            try:
                q = tokens(check_query(job.query))
                d = 0
                for doc in job.documents:
                    text, title = document_key(doc)
                    d += tokens(text) + (tokens(title) if title else 0)
                self._check_tokens(q, d)
            except Exception as exc:
                job.future.set_exception(exc)
                continue
            ready.append((job, q, d))
        pairs = [(job.query, job.documents) for job, _, _ in ready]
        encodings: set[tuple[tuple[str, str], ...]] = set()
        for pos, result, shared in rank_groups(self.scorer, pairs, skip=lambda pos: ready[pos][0].future in self._abandoned):
            job, q, d = ready[pos]
            key = tuple(document_key(doc) for doc in job.documents) if job.documents else ()
            with self._lock:
                if key and key not in encodings and not isinstance(result, AbandonedError):
                    encodings.add(key)
                    self._stats["encodings"] += 1
                if shared:
                    self._stats["shared_requests"] += 1
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(RerankOutcome(result, q, d, shared))

    def _check_tokens(self, query_tokens: int, document_tokens: int) -> None:
        if self.max_query_tokens is not None and query_tokens > self.max_query_tokens:
            raise LimitExceededError("max_query_tokens", query_tokens, self.max_query_tokens, "query tokens")
        total = query_tokens + document_tokens
        if self.limits.max_request_tokens is not None and total > self.limits.max_request_tokens:
            raise LimitExceededError("max_request_tokens", total, self.limits.max_request_tokens,
                                     "tokens (query and documents)")

    def _drain_after_stop(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP and item.future.set_running_or_notify_cancel():
                item.future.set_exception(OverloadedError("the server is shutting down"))
