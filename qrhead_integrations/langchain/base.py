"""``QRHeadReranker`` (a LangChain document compressor) and ``QRHeadRerankRetriever`` (a retriever
followed by the re-ranker)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import ConfigDict, Field

from ..adapters.documents import copy_metadata, evidence_metadata, first_stage_scores
from ..adapters.fields import ScorerConfig
from ..engine.batch import RankJob, rank_jobs
from ..engine.ranking import RankedPassage
from ._steps import Call, Steps, run_async, run_sync

RUN_NAME = "QRHeadReranker"


class QRHeadReranker(ScorerConfig, BaseDocumentCompressor):
    """Re-rank documents with a language model's query-focused retrieval heads (QRHead).

    All documents are scored in one forward pass of the scorer model (windows when they exceed its
    context). The QRHead score is fused (``fusion``) with ``metadata[first_stage_score_key]`` when that
    key is set and every document has a number there; otherwise with what ``first_stage`` computes (the
    default: BM25 over these documents). The input order is read as a ranking only with
    ``first_stage="order"``; it decides where documents sit in the prompt (``candidate_order``).

    Returns new ``Document`` objects (same ``id``, deep-copied metadata) with ``metadata["relevance_score"]``
    (a Python float: the QRHead score, or the fused score with ``fusion``); the input is not modified.
    Callbacks passed in (or configured globally, e.g. tracing) see one chain run named
    ``QRHeadReranker`` with the query and the returned documents. Every scoring option of the engine is
    a field here (see :class:`~qrhead_integrations.ScoringOptions`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = Field(default=3, ge=1, strict=True,
                              description="Documents to return (best first); None = all, re-ordered.")
    first_stage_score_key: str | None = Field(
        default=None,
        description="Metadata key holding the first-stage score, fused with the QRHead score; None (or a "
                    "document without a number there) = the first_stage option stands in (default: BM25 over "
                    "the documents).")
    score_key: str = Field(default="relevance_score", min_length=1,
                           description="Metadata key the ranking score is written to.")
    evidence: int = Field(default=0, ge=0, strict=True,
                          description="Put the N sentences of each document that hold most of the heads' "
                                      "attention into metadata['qrhead_evidence'] (character offsets); 0 = off.")

    @classmethod
    def from_llm(cls, llm: Any, heads: Any = None, *, model_name: str | None = None,
                 **kwargs: Any) -> QRHeadReranker:
        """Score with the generator's own loaded weights: ``llm`` is LangChain's ``HuggingFacePipeline``,
        a ``ChatHuggingFace`` around one, or a transformers pipeline. No copy, no reload; the LLM generates
        as before. ``heads`` default to the set registered for the model; ``kwargs`` are this class's
        fields (``top_n``, scoring options...)."""
        from .llm import scorer_from_llm

        return cls.from_scorer(scorer_from_llm(llm, heads, model_name=model_name), **kwargs)

    # --- ranking --------------------------------------------------------------------------------
    def _job(self, query: str, documents: Sequence[Document], top_n: int | None) -> RankJob:
        first_stage = None  # the scorer's first_stage option (default: BM25 over the documents), never their order
        if self.first_stage_score_key is not None:
            first_stage = first_stage_scores([d.metadata.get(self.first_stage_score_key) for d in documents])
        return RankJob(query, [d.page_content for d in documents], self.top_n if top_n is None else top_n,
                       first_stage, self.evidence)

    def rank(self, query: str, documents: Sequence[Document], top_n: int | None = None) -> list[Document]:
        """Re-rank without callbacks: new documents, best first, at most ``top_n`` (default: the field)."""
        if len(documents) == 0:
            return []
        job = self._job(query, documents, top_n)
        ranked = self.scorer.rank(job.query, job.passages, top_k=job.top_k, first_stage_scores=job.first_stage_scores,
                                  evidence=job.evidence)
        return [self._result(documents[r.index], r) for r in ranked]

    def rank_many(self, queries: Sequence[str], documents: Sequence[Sequence[Document]], top_n: int | None = None,
                  *, return_exceptions: bool = False) -> list[list[Document] | Exception]:
        """:meth:`rank` for many queries: ``documents[i]`` are the candidates of ``queries[i]``.

        Queries whose candidates have the same texts (e.g. many questions over one document's chunks, or
        a first stage that returns the same documents) are scored on one encoding: the documents are
        read once, each query adds one short pass. The results equal ``[rank(q, d, top_n) for q, d in
        ...]`` exactly. With ``return_exceptions``, a query's error is returned in its place.
        """
        if isinstance(queries, str) or len(queries) != len(documents):
            raise ValueError("rank_many needs a list of queries and one list of documents per query")
        docs = [list(d) for d in documents]
        out: list[Any] = [[] for _ in docs]  # no candidates: nothing to rank (as rank() does)
        todo = [i for i, d in enumerate(docs) if d]
        if todo:
            jobs = [self._job(queries[i], docs[i], top_n) for i in todo]
            for i, r in zip(todo, rank_jobs(self.scorer, jobs, return_exceptions=return_exceptions)):
                out[i] = r if isinstance(r, Exception) else [self._result(docs[i][x.index], x) for x in r]
        return out

    async def arank_many(self, queries: Sequence[str], documents: Sequence[Sequence[Document]],
                         top_n: int | None = None, *, return_exceptions: bool = False
                         ) -> list[list[Document] | Exception]:
        """Async form of :meth:`rank_many` (the forward passes run in a worker thread)."""
        return await asyncio.to_thread(self.rank_many, queries, documents, top_n, return_exceptions=return_exceptions)

    def _result(self, doc: Document, r: RankedPassage) -> Document:
        metadata = copy_metadata(doc.metadata)
        metadata[self.score_key] = float(r.score)
        if r.fused:
            metadata["qrhead_score"] = float(r.qrhead_score)
        if r.truncated:
            metadata["qrhead_truncated"] = True
        if self.evidence:
            metadata["qrhead_evidence"] = evidence_metadata(r)
        return doc.model_copy(update={"metadata": metadata})

    def _compress_steps(self, documents: Sequence[Document], query: str, callbacks: Callbacks | None,
                        top_n: int | None) -> Steps[Sequence[Document]]:
        inputs = {"query": query, "documents": list(documents)}
        run = yield Call(
            lambda: CallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(None, inputs, name=RUN_NAME),
            lambda: AsyncCallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(None, inputs,
                                                                                                   name=RUN_NAME))
        try:
            out = yield Call(lambda: self.rank(query, documents, top_n),
                             lambda: asyncio.to_thread(self.rank, query, documents, top_n))
        except BaseException as exc:
            yield Call(lambda e=exc: run.on_chain_error(e))
            raise
        yield Call(lambda: run.on_chain_end({"documents": out}))
        return out

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> Sequence[Document]:
        """Re-rank ``documents`` for ``query`` (the ``BaseDocumentCompressor`` interface)."""
        return run_sync(self._compress_steps(documents, query, callbacks, top_n))

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> Sequence[Document]:
        """Async form: callbacks run on the event loop, the forward pass in a worker thread."""
        return await run_async(self._compress_steps(documents, query, callbacks, top_n))


class BatchSteps:
    """``batch`` / ``abatch`` of a retriever whose batch logic is one ``_batch_steps`` generator (see
    :mod:`._steps`): results and callback runs are those of one ``invoke`` per input, with the scoring
    shared; fewer than two inputs take LangChain's own path."""

    def batch(self, inputs: list[str], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[list[Document]]:
        if len(inputs) < 2:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)  # type: ignore[misc]
        return run_sync(self._batch_steps(inputs, config, return_exceptions, kwargs))  # type: ignore[attr-defined]

    async def abatch(self, inputs: list[str], config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[list[Document]]:
        """Async form of ``batch``: callbacks on the event loop, the forward passes in a worker thread."""
        if len(inputs) < 2:
            return await super().abatch(  # type: ignore[misc]
                inputs, config, return_exceptions=return_exceptions, **kwargs)
        return await run_async(self._batch_steps(inputs, config, return_exceptions, kwargs))  # type: ignore[attr-defined]


class QRHeadRerankRetriever(BatchSteps, BaseRetriever):
    """A retriever that re-ranks another retriever's documents with a :class:`QRHeadReranker`.

    The same idea as langchain-classic's ``ContextualCompressionRetriever``, without needing it::

        retriever = QRHeadRerankRetriever(base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}),
                                          reranker=QRHeadReranker(), k=4)

    ``k`` is the number of documents returned (LangChain's convention), at construction or per call
    (``retriever.invoke(query, k=2)``); None = the reranker's ``top_n``. ``fetch_k`` is the first-stage
    depth: when set (at construction or per call), a base ``BaseRetriever`` is asked for that many
    candidates (``base_retriever.invoke(query, k=fetch_k)``, LangChain's convention) and any base's
    result is cut to ``fetch_k``; None = the base retriever's own setting. Other keyword arguments of
    ``invoke`` go to the base retriever.

    ``batch`` / ``abatch`` run the first stage for every input (concurrently, up to ``max_concurrency``)
    and then score queries whose candidates are the same documents on one encoding (see
    :meth:`QRHeadReranker.rank_many`); results and callback runs are those of one ``invoke`` per input.

    Serialisation (``model_dump`` / ``model_dump_json``) covers ``k``, ``fetch_k`` and the reranker's
    settings; ``base_retriever`` is a live object and is excluded: pass it again when loading,
    ``QRHeadRerankRetriever.model_validate({**data, "base_retriever": base})``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    base_retriever: RetrieverLike = Field(exclude=True)
    reranker: QRHeadReranker = Field(default_factory=QRHeadReranker)
    k: int | None = Field(default=None, ge=1, strict=True,
                          description="Documents to return; None = the reranker's top_n.")
    fetch_k: int | None = Field(
        default=None, ge=1, strict=True,
        description="Candidates to ask the base retriever for (passed to it as k); None = its own setting.")

    def _top(self, k: int | None) -> int | None:
        if k is None:
            return self.k if self.k is not None else self.reranker.top_n
        return positive_int("k", k)

    def _first_stage_kwargs(self, fetch_k: int | None, kwargs: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
        """The first-stage depth and the keywords for the base retriever (``k=depth`` for a retriever;
        another runnable gets no ``k``, its output is only cut to the depth)."""
        depth = self.fetch_k if fetch_k is None else positive_int("fetch_k", fetch_k)
        if depth is not None and isinstance(self.base_retriever, BaseRetriever):
            return depth, {**kwargs, "k": depth}
        return depth, dict(kwargs)

    def _relevant_steps(self, query: str, child: Any, k: int | None, fetch_k: int | None,
                        kwargs: dict[str, Any]) -> Steps[list[Document]]:
        top = self._top(k)
        depth, base_kwargs = self._first_stage_kwargs(fetch_k, kwargs)
        config = {"callbacks": child}
        docs = _documents((yield Call(lambda: self.base_retriever.invoke(query, config=config, **base_kwargs),
                                      lambda: self.base_retriever.ainvoke(query, config=config, **base_kwargs))),
                          depth)
        if not docs:
            return []
        return list((yield from self.reranker._compress_steps(docs, query, child, top)))

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None,
        fetch_k: int | None = None, **kwargs: Any
    ) -> list[Document]:
        return run_sync(self._relevant_steps(query, run_manager.get_child(), k, fetch_k, kwargs))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None,
        fetch_k: int | None = None, **kwargs: Any
    ) -> list[Document]:
        return await run_async(self._relevant_steps(query, run_manager.get_child(), k, fetch_k, kwargs))

    # --- several queries ----------------------------------------------------------------------------
    def _batch_steps(self, inputs: list[str], config: RunnableConfig | list[RunnableConfig] | None,
                     return_exceptions: bool, kwargs: dict[str, Any]) -> Steps[list[list[Document]]]:
        configs = get_config_list(config, len(inputs))
        kwargs.pop("run_id", None)  # one run id cannot name several runs: a per-input config's run_id is used
        k, fetch_k = kwargs.pop("k", None), kwargs.pop("fetch_k", None)
        runs = []
        for q, c in zip(inputs, configs):
            runs.append((yield Call(lambda q=q, c=c: start_run(self, q, c, kwargs),
                                    lambda q=q, c=c: astart_run(self, q, c, kwargs))))
        out: list[Any] = [None] * len(inputs)
        try:
            top = self._top(k)
            depth, base_kwargs = self._first_stage_kwargs(fetch_k, kwargs)
        except Exception as exc:
            out = [exc] * len(inputs)
        else:
            child = [{"callbacks": r.get_child(), "max_concurrency": c.get("max_concurrency")}
                     for r, c in zip(runs, configs)]
            first = yield Call(lambda: self.base_retriever.batch(inputs, child, return_exceptions=True, **base_kwargs),
                               lambda: self.base_retriever.abatch(inputs, child, return_exceptions=True, **base_kwargs))
            chains: dict[int, Any] = {}
            for i, docs in enumerate(first):
                try:
                    out[i] = docs = _documents(_raise(docs), depth)
                except Exception as exc:
                    out[i] = exc
                    continue
                if docs:
                    payload = {"query": inputs[i], "documents": list(docs)}
                    handlers = runs[i].get_child()
                    chains[i] = yield Call(
                        lambda h=handlers, p=payload: CallbackManager.configure(inheritable_callbacks=h).on_chain_start(
                            None, p, name=RUN_NAME),
                        lambda h=handlers, p=payload: AsyncCallbackManager.configure(
                            inheritable_callbacks=h).on_chain_start(None, p, name=RUN_NAME))
            if chains:
                queries, candidates = [inputs[i] for i in chains], [out[i] for i in chains]
                ranked = yield Call(
                    lambda: self.reranker.rank_many(queries, candidates, top, return_exceptions=True),
                    lambda: self.reranker.arank_many(queries, candidates, top, return_exceptions=True))
                for (i, chain), result in zip(chains.items(), ranked):
                    yield Call(lambda ch=chain, r=result: ch.on_chain_error(r) if isinstance(r, Exception)
                               else ch.on_chain_end({"documents": r}))
                    out[i] = result
        yield from end_runs(runs, out)
        return finish_batch(out, return_exceptions)


# --- helpers shared with the chunk retriever ------------------------------------------------------------


def positive_int(name: str, value: Any) -> int:
    """``value`` when it is a positive integer (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _raise(value: Any) -> Any:
    if isinstance(value, Exception):
        raise value
    return value


def _run_settings(retriever: BaseRetriever, config: RunnableConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What ``BaseRetriever.invoke`` configures its callback manager with (one input of a batch)."""
    return dict(
        inheritable_callbacks=config.get("callbacks"), local_callbacks=None, verbose=kwargs.get("verbose", False),
        inheritable_tags=config.get("tags"), local_tags=retriever.tags,
        inheritable_metadata={**(config.get("metadata") or {}), **retriever._get_ls_params(**kwargs)},
        local_metadata=retriever.metadata,
    )


def start_run(retriever: BaseRetriever, query: str, config: RunnableConfig,
              kwargs: dict[str, Any]) -> CallbackManagerForRetrieverRun:
    """The retriever run ``invoke`` would start for ``query`` (callbacks, tags, metadata, run name)."""
    manager = CallbackManager.configure(**_run_settings(retriever, config, kwargs))
    return manager.on_retriever_start(None, query, name=config.get("run_name") or retriever.get_name(),
                                      run_id=config.get("run_id"))


async def astart_run(retriever: BaseRetriever, query: str, config: RunnableConfig,
                     kwargs: dict[str, Any]) -> AsyncCallbackManagerForRetrieverRun:
    manager = AsyncCallbackManager.configure(**_run_settings(retriever, config, kwargs))
    return await manager.on_retriever_start(None, query, name=config.get("run_name") or retriever.get_name(),
                                            run_id=config.get("run_id"))


def end_runs(runs: list[Any], out: list[Any]) -> Steps[None]:
    """Close each input's retriever run with its result or its error."""
    for run, result in zip(runs, out):
        yield Call(lambda run=run, r=result: run.on_retriever_error(r) if isinstance(r, Exception)
                   else run.on_retriever_end(r))


def finish_batch(out: list[Any], return_exceptions: bool) -> list[Any]:
    """A batch's results: the first error raised unless errors are returned in place (as Runnable.batch)."""
    if not return_exceptions:
        for result in out:
            if isinstance(result, Exception):
                raise result
    return out


def _documents(docs: Any, limit: int | None = None) -> list[Document]:
    """The base retriever's output, checked (a clear error instead of a failure deep in the re-ranker) and
    cut to ``limit`` (the first-stage depth)."""
    if docs is None:
        return []
    if isinstance(docs, (str, Document)) or not isinstance(docs, Sequence):
        raise TypeError(f"the base retriever returned a {type(docs).__name__}, not a list of Documents")
    bad = [i for i, d in enumerate(docs) if not isinstance(d, Document)]
    if bad:
        raise TypeError(f"the base retriever returned {type(docs[bad[0]]).__name__} items (e.g. at position {bad[0]}), "
                        "not LangChain Documents: wrap them as Document(page_content=...)")
    return list(docs)[:limit] if limit is not None else list(docs)
