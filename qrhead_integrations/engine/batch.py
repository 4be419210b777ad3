"""One batching path: many ``(query, passages)`` jobs ranked exactly as one-at-a-time calls would rank
them, with the passages read once wherever they repeat.

The batch entry points that return rankings run through :func:`iter_rank_jobs`: the framework adapters'
``rank_many`` (LangChain's ``batch``/``abatch``), the HTTP server's worker and the Ray Data job. Chunk
selection over many questions (``select_many``) uses :func:`shared_encoding`, and the scorer's
:meth:`score_batch` (raw scores) its own loop, both with the same policy. One policy for long inputs: jobs with equal passages share
one encoding planned for all their queries when the passages fit one prompt whole
(:attr:`EncodedPassages.same_for_every_query`); passages that need windows (or cuts to fit) are scored
query by query with :meth:`QRHeadScorer.rank`, because windows planned for another query's room can
differ from a single call's. So a job's result never depends on the other jobs in its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .prompt import check_passages
from .ranking import RankedPassage, check_evidence, check_first_stage_scores, check_query, check_top_k


@dataclass(frozen=True)
class RankJob:
    """One query's re-ranking request: what :meth:`QRHeadScorer.rank` takes."""

    query: str
    passages: Sequence[Any]
    top_k: int | None = None
    first_stage_scores: Sequence[float] | None = None
    evidence: int = 0


class AbandonedError(RuntimeError):
    """Nobody waits for the job's result any more (e.g. the HTTP client went away): it was not scored."""


def shared_encoding(scorer: Any, passages: Sequence[Any], queries: Sequence[str]) -> Any:
    """The passages encoded once for ``queries``, or None when sharing could change a query's scores
    (passages that need windows: each query is then scored on its own, as a single call would)."""
    encoded = scorer.encode(passages, queries=list(queries))
    return encoded if encoded.same_for_every_query else None


def iter_rank_jobs(scorer: Any, jobs: Sequence[RankJob], *, skip: Callable[[int], bool] | None = None,
                   ) -> Iterator[tuple[int, list[RankedPassage] | Exception]]:
    """``(position, ranking or the job's error)`` for every job, as each is done (grouped by passages, in
    order of first appearance). Each ranking equals ``scorer.rank(job.query, job.passages, job.top_k,
    job.first_stage_scores, evidence=job.evidence)``. ``skip(position)``, asked just before a job's turn,
    drops jobs nobody waits for (they get :class:`AbandonedError`, and are never scored).
    """
    skip = skip or (lambda i: False)
    gone = "nobody waits for this job any more"
    groups: dict[tuple, list[tuple[int, str, int | None, list[float] | None, int]]] = {}
    for i, job in enumerate(jobs):
        try:
            query = check_query(job.query)
            check_top_k(job.top_k)
            items = check_passages(job.passages)
            fs = check_first_stage_scores(job.first_stage_scores, len(items))
            evidence = check_evidence(job.evidence)
        except Exception as exc:
            yield i, exc
            continue
        if not items:
            yield i, []
            continue
        groups.setdefault(tuple(items), []).append((i, query, job.top_k, fs, evidence))
    for items, members in groups.items():
        wanted = []
        for member in members:
            if skip(member[0]):
                yield member[0], AbandonedError(gone)
            else:
                wanted.append(member)
        encoded = None
        if len(wanted) > 1:
            try:
                encoded = shared_encoding(scorer, list(items), [m[1] for m in wanted])
            except Exception:  # e.g. a budget error: the single calls report it, each for its own query
                encoded = None
        try:
            for i, query, top_k, fs, evidence in wanted:
                if skip(i):
                    yield i, AbandonedError(gone)
                    continue
                try:
                    if encoded is not None:
                        yield i, encoded.rank(query, top_k, fs, evidence=evidence)
                    else:
                        yield i, scorer.rank(query, list(items), top_k=top_k, first_stage_scores=fs,
                                             evidence=evidence)
                except Exception as exc:
                    yield i, exc
        finally:
            del encoded  # frees the passages' KV cache before the next group


def rank_jobs(scorer: Any, jobs: Sequence[RankJob], *,
              return_exceptions: bool = False) -> list[list[RankedPassage] | Exception]:
    """``[scorer.rank(j.query, j.passages, j.top_k, j.first_stage_scores) for j in jobs]`` through
    :func:`iter_rank_jobs`. ``return_exceptions``: a job's error (e.g. an empty query) is returned in its
    place instead of raised; without it, the first invalid job raises before any scoring (
    :func:`iter_rank_jobs` yields every job's argument errors before its first forward pass)."""
    out: list[Any] = [None] * len(jobs)
    for i, result in iter_rank_jobs(scorer, jobs):
        if isinstance(result, Exception) and not return_exceptions:
            raise result
        out[i] = result
    return out
