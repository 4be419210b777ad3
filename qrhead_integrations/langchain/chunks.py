"""Chunk selection in one long document, for LangChain: split with a LangChain text splitter, score every
chunk in one QRHead pass, return the best chunks as Documents with exact character offsets."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_text_splitters import RecursiveCharacterTextSplitter, TextSplitter
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, field_validator

from .._adapter import copy_metadata
from ..chunks import Chunk, ChunkSelection, DocumentChunks, SelectedChunk, select_chunks
from .base import QRHeadReranker


def default_text_splitter() -> RecursiveCharacterTextSplitter:
    """The splitter used when none is given: ~1,000-character chunks (about 250 tokens), 100 overlapping."""
    return RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)


def _all_chunks_reranker() -> QRHeadReranker:
    return QRHeadReranker(top_n=None)


class QRHeadChunkRetriever(BaseRetriever):
    """Retrieve the chunks of ONE long document that a question needs.

    The document is split once with ``text_splitter`` (any LangChain ``TextSplitter``; default
    :func:`default_text_splitter`, or e.g. ``TokenTextSplitter.from_huggingface_tokenizer(...)``) and
    each chunk is located in ``document.page_content``. Each query scores every chunk in one QRHead pass
    (windows when the document exceeds the scorer's context) and returns the best chunks as new
    Documents: the document's metadata plus ``start_index`` / ``end_index`` (character offsets,
    ``page_content[start_index:end_index] == chunk.page_content``), ``chunk_index``, ``source_id``
    (the document's id) and ``relevance_score``.

    Selection: ``k`` chunks (LangChain's name for the number of results, also accepted as ``top_k``, and
    per call: ``invoke(query, k=2)``; default 5), or as many as fit ``token_budget`` tokens (greedy by
    score; counted with ``count_tokens``, default the scorer's tokenizer), optionally in document order
    (``keep_document_order``). The scorer is configured by ``reranker`` (its ``top_n`` is not used); the
    chunks sit in the prompt in reading order (``candidate_order="as_given"``; ``None`` = the reranker's).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    document: Document
    reranker: QRHeadReranker = Field(default_factory=_all_chunks_reranker)
    text_splitter: TextSplitter = Field(default_factory=default_text_splitter)
    k: int | None = Field(default=None, ge=1, validation_alias=AliasChoices("k", "top_k"),
                          description="Chunks to return (default 5 when there is no token_budget).")
    token_budget: int | None = Field(default=None, ge=1)
    keep_document_order: bool = False
    count_tokens: Any | None = Field(default=None, exclude=True)
    candidate_order: Literal["reversed", "as_given", "both"] | None = "as_given"

    _chunks: DocumentChunks = PrivateAttr(default_factory=DocumentChunks)

    @field_validator("document", mode="before")
    @classmethod
    def _document(cls, value: Any) -> Any:
        return Document(page_content=value) if isinstance(value, str) else value

    @property
    def chunks(self) -> list[Chunk]:
        """The document's chunks with their offsets (split on first use, again if the document or
        splitter is replaced)."""
        return self._chunks.get(self.document.page_content, self.text_splitter.split_text,
                                source_id=self.document.id, splitter=self.text_splitter)

    @property
    def top_k(self) -> int | None:
        return self.k

    def select(self, query: str, k: int | None = None) -> ChunkSelection:
        """The framework-free selection (offsets, scores, token counts) for ``query``."""
        return select_chunks(
            self.reranker.scorer, query, self.chunks, top_k=self.k if k is None else k, token_budget=self.token_budget,
            keep_document_order=self.keep_document_order, count_tokens=self.count_tokens,
            candidate_order=self.candidate_order,
        )

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return [chunk_document(self.document, c, self.reranker.score_key) for c in self.select(query, k)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        selection = await asyncio.to_thread(self.select, query, k)
        return [chunk_document(self.document, c, self.reranker.score_key) for c in selection]


def chunk_document(document: Document, chunk: SelectedChunk, score_key: str = "relevance_score") -> Document:
    """A selected chunk as a new Document pointing back at ``document`` (metadata copied, offsets added)."""
    metadata = copy_metadata(document.metadata)
    metadata.update(start_index=chunk.start, end_index=chunk.end, chunk_index=chunk.index,
                    source_id=document.id)
    metadata[score_key] = float(chunk.score)
    if chunk.truncated:
        metadata["qrhead_truncated"] = True
    return Document(
        page_content=chunk.text,
        metadata=metadata,
        id=f"{document.id}-chunk-{chunk.index}" if document.id else None,
    )


def select_document_chunks(
    document: Document | str,
    query: str,
    *,
    reranker: QRHeadReranker | None = None,
    text_splitter: TextSplitter | None = None,
    top_k: int | None = None,
    token_budget: int | None = None,
    keep_document_order: bool = False,
    count_tokens: Any = None,
    candidate_order: str | None = "as_given",
) -> list[Document]:
    """One-shot form of :class:`QRHeadChunkRetriever`: the best chunks of ``document`` for ``query``."""
    kwargs: dict[str, Any] = {"document": document, "k": top_k, "token_budget": token_budget,
                                  "keep_document_order": keep_document_order, "count_tokens": count_tokens,
                                  "candidate_order": candidate_order}
    if reranker is not None:
        kwargs["reranker"] = reranker
    if text_splitter is not None:
        kwargs["text_splitter"] = text_splitter
    return QRHeadChunkRetriever(**kwargs).invoke(query)
