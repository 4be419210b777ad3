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
from pydantic import ConfigDict, Field

from .._adapter import ScorerConfig, copy_metadata, first_stage_scores
from ..engine.ranking import RankedPassage

RUN_NAME = "QRHeadReranker"


class QRHeadReranker(ScorerConfig, BaseDocumentCompressor):
    """Re-rank documents with a language model's query-focused retrieval heads (QRHead).

    All documents are scored in one forward pass of the scorer model (windows when they exceed its
    context). Documents arrive in first-stage order, best first: that order places them in the prompt
    (``candidate_order``) and, with ``fusion``, is fused with the QRHead score (together with
    ``metadata[first_stage_score_key]`` when that key is set and every document has a number there).

    Returns new ``Document`` objects (same ``id``, deep-copied metadata) with ``metadata["relevance_score"]``
    (a Python float: the QRHead score, or the fused score with ``fusion``); the input is not modified.
    Callbacks passed in (or configured globally, e.g. tracing) see one chain run named
    ``QRHeadReranker`` with the query and the returned documents. Every scoring option of the engine is
    a field here (see :class:`~qrhead_integrations.ScoringOptions`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = Field(default=3, ge=1, description="Documents to return (best first); None = all, re-ordered.")
    first_stage_score_key: str | None = Field(
        default=None,
        description="Metadata key holding the first-stage score (used by fusion='linear'/'rrf'); None = "
                    "use the input order only.")
    score_key: str = Field(default="relevance_score", min_length=1,
                           description="Metadata key the ranking score is written to.")

    # --- ranking --------------------------------------------------------------------------------
    def rank(self, query: str, documents: Sequence[Document], top_n: int | None = None) -> list[Document]:
        """Re-rank without callbacks: new documents, best first, at most ``top_n`` (default: the field)."""
        if len(documents) == 0:
            return []
        scorer = self.scorer
        first_stage = None
        if self.first_stage_score_key is not None:
            first_stage = first_stage_scores([d.metadata.get(self.first_stage_score_key) for d in documents])
        ranked = scorer.rank(query, [d.page_content for d in documents], top_k=self.top_n if top_n is None else top_n,
                             first_stage_scores=first_stage)
        return [self._result(documents[r.index], r) for r in ranked]

    def _result(self, doc: Document, r: RankedPassage) -> Document:
        metadata = copy_metadata(doc.metadata)
        metadata[self.score_key] = float(r.score)
        if self.fusion is not None:
            metadata["qrhead_score"] = float(r.qrhead_score)
        if r.truncated:
            metadata["qrhead_truncated"] = True
        return doc.model_copy(update={"metadata": metadata})

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> Sequence[Document]:
        """Re-rank ``documents`` for ``query`` (the ``BaseDocumentCompressor`` interface)."""
        manager = CallbackManager.configure(inheritable_callbacks=callbacks)
        run = manager.on_chain_start(None, {"query": query, "documents": list(documents)}, name=RUN_NAME)
        try:
            out = self.rank(query, documents, top_n)
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end({"documents": out})
        return out

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        top_n: int | None = None,
    ) -> Sequence[Document]:
        """Async form: callbacks run on the event loop, the forward pass in a worker thread."""
        manager = AsyncCallbackManager.configure(inheritable_callbacks=callbacks)
        run = await manager.on_chain_start(None, {"query": query, "documents": list(documents)},
                                           name=RUN_NAME)
        try:
            out = await asyncio.to_thread(self.rank, query, documents, top_n)
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end({"documents": out})
        return out


class QRHeadRerankRetriever(BaseRetriever):
    """A retriever that re-ranks another retriever's documents with a :class:`QRHeadReranker`.

    The same idea as langchain-classic's ``ContextualCompressionRetriever``, without needing it::

        retriever = QRHeadRerankRetriever(base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}),
                                          reranker=QRHeadReranker(), k=4)

    ``k`` is the number of documents returned (LangChain's convention), at construction or per call
    (``retriever.invoke(query, k=2)``); None = the reranker's ``top_n``. How many candidates the first
    stage fetches is the base retriever's own setting; other keyword arguments of ``invoke`` go to it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    base_retriever: RetrieverLike = Field(exclude=True)
    reranker: QRHeadReranker = Field(default_factory=QRHeadReranker)
    k: int | None = Field(default=None, ge=1, description="Documents to return; None = the reranker's top_n.")

    def _top(self, k: int | None) -> int | None:
        if k is None:
            return self.k if self.k is not None else self.reranker.top_n
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, not {k!r}")
        return k

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **kwargs: Any
    ) -> list[Document]:
        top = self._top(k)
        docs = _documents(self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **kwargs))
        if not docs:
            return []
        return list(self.reranker.compress_documents(docs, query, callbacks=run_manager.get_child(), top_n=top))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None, **kwargs: Any
    ) -> list[Document]:
        top = self._top(k)
        docs = _documents(await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()},
                                                            **kwargs))
        if not docs:
            return []
        return list(await self.reranker.acompress_documents(docs, query, callbacks=run_manager.get_child(),
                                                            top_n=top))


def _documents(docs: Any) -> list[Document]:
    """The base retriever's output, checked: a clear error instead of a failure deep in the re-ranker."""
    if docs is None:
        return []
    if isinstance(docs, (str, Document)) or not isinstance(docs, Sequence):
        raise TypeError(f"the base retriever returned a {type(docs).__name__}, not a list of Documents")
    bad = [i for i, d in enumerate(docs) if not isinstance(d, Document)]
    if bad:
        raise TypeError(f"the base retriever returned {type(docs[bad[0]]).__name__} items (e.g. at position {bad[0]}), "
                        "not LangChain Documents: wrap them as Document(page_content=...)")
    return list(docs)
