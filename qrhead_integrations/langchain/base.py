"""``QRHeadReranker`` (a LangChain document compressor) and ``QRHeadRerankRetriever`` (a retriever
followed by the re-ranker)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from .._adapter import (
    DEFAULTS,
    DESCRIPTIONS,
    NORMALIZED_FIELDS,
    ScorerSettings,
    ScorerSlot,
    copy_metadata,
    first_stage_scores,
    normalize_field,
)
from ..engine.scoring import RankedPassage

HeadsField = str | list[tuple[int, int]] | None
RUN_NAME = "QRHeadReranker"


class QRHeadReranker(ScorerSettings, BaseDocumentCompressor):
    """Re-rank documents with a language model's query-focused retrieval heads (QRHead).

    All documents are scored in one forward pass of the scorer model (windows when they exceed its
    context). Documents arrive in first-stage order, best first: that order places them in the prompt
    (``candidate_order``) and, with ``fusion``, is fused with the QRHead score (together with
    ``metadata[first_stage_score_key]`` when that key is set and every document has a number there).

    Returns new ``Document`` objects (same ``id``, deep-copied metadata) with ``metadata["relevance_score"]``
    (a Python float: the QRHead score, or the fused score with ``fusion``); the input is not modified.
    Callbacks passed in (or configured globally, e.g. tracing) see one chain run named
    ``QRHeadReranker`` with the query and the returned documents.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str | None = Field(default=None, description=DESCRIPTIONS["model"])
    heads: HeadsField = Field(default=None, description=DESCRIPTIONS["heads"])
    top_n: int | None = Field(default=3, ge=1, description="Documents to return; None = all, re-ordered.")
    device: str | None = Field(default=None, description=DESCRIPTIONS["device"])
    dtype: str | None = Field(default=None, description=DESCRIPTIONS["dtype"])
    attn_implementation: str | None = Field(default=None, description=DESCRIPTIONS["attn_implementation"])
    candidate_order: Literal["reversed", "as_given", "both"] = Field(
        default=DEFAULTS["candidate_order"], description=DESCRIPTIONS["candidate_order"])
    calibrate: bool = Field(default=DEFAULTS["calibrate"], description=DESCRIPTIONS["calibrate"])
    null_query: str = Field(default=DEFAULTS["null_query"], min_length=1,
                            description=DESCRIPTIONS["null_query"])
    max_context_tokens: int | None = Field(default=None, ge=1, description=DESCRIPTIONS["max_context_tokens"])
    max_passage_tokens: int | None = Field(default=None, ge=1, description=DESCRIPTIONS["max_passage_tokens"])
    max_query_tokens: int = Field(default=DEFAULTS["max_query_tokens"], ge=1,
                                  description=DESCRIPTIONS["max_query_tokens"])
    fusion: Literal["rrf", "linear"] | None = Field(default=None, description=DESCRIPTIONS["fusion"])
    fusion_weight: float = Field(default=DEFAULTS["fusion_weight"], ge=0.0, le=1.0,
                                 description=DESCRIPTIONS["fusion_weight"])
    rrf_k: int = Field(default=DEFAULTS["rrf_k"], ge=1, description=DESCRIPTIONS["rrf_k"])
    first_stage_score_key: str | None = Field(
        default=None,
        description="Metadata key holding the first-stage score (used by fusion='linear'/'rrf'); None = "
                    "use the input order only.")
    score_key: str = Field(default="relevance_score", min_length=1,
                           description="Metadata key the ranking score is written to.")

    _slot: ScorerSlot = PrivateAttr(default_factory=ScorerSlot)

    @field_validator(*NORMALIZED_FIELDS, mode="before")
    @classmethod
    def _normalize(cls, value: Any, info: ValidationInfo) -> Any:
        return normalize_field(info.field_name, value)

    # --- ranking --------------------------------------------------------------------------------
    def rank(self, documents: Sequence[Document], query: str) -> list[Document]:
        """Re-rank without callbacks: new documents, best first, at most ``top_n``."""
        if len(documents) == 0:
            return []
        scorer = self.scorer
        first_stage = None
        if self.first_stage_score_key is not None:
            first_stage = first_stage_scores([d.metadata.get(self.first_stage_score_key) for d in documents])
        ranked = scorer.rank(query, [d.page_content for d in documents], top_k=self.top_n,
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
    ) -> Sequence[Document]:
        """Re-rank ``documents`` for ``query`` (the ``BaseDocumentCompressor`` interface)."""
        manager = CallbackManager.configure(inheritable_callbacks=callbacks)
        run = manager.on_chain_start(None, {"query": query, "documents": list(documents)}, name=RUN_NAME)
        try:
            out = self.rank(documents, query)
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
    ) -> Sequence[Document]:
        """Async form: callbacks run on the event loop, the forward pass in a worker thread."""
        manager = AsyncCallbackManager.configure(inheritable_callbacks=callbacks)
        run = await manager.on_chain_start(None, {"query": query, "documents": list(documents)},
                                           name=RUN_NAME)
        try:
            out = await asyncio.to_thread(self.rank, documents, query)
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end({"documents": out})
        return out


class QRHeadRerankRetriever(BaseRetriever):
    """A retriever that re-ranks another retriever's documents with a :class:`QRHeadReranker`.

    The same idea as langchain-classic's ``ContextualCompressionRetriever``, without needing it::

        retriever = QRHeadRerankRetriever(base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}),
                                          reranker=QRHeadReranker(top_n=4))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    base_retriever: RetrieverLike
    reranker: QRHeadReranker = Field(default_factory=QRHeadReranker)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        if not docs:
            return []
        return list(self.reranker.compress_documents(docs, query, callbacks=run_manager.get_child()))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()},
                                                 **kwargs)
        if not docs:
            return []
        return list(await self.reranker.acompress_documents(docs, query, callbacks=run_manager.get_child()))
