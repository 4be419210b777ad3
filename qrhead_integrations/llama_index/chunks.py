"""Chunk selection in one long document, for LlamaIndex: split with a LlamaIndex splitter, score every
chunk in one QRHead pass, return the best chunks as nodes with exact character offsets."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import (
    BaseNode,
    Document,
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    TextNode,
)

from ..adapters.chunk_selection import ChunkCache, select_many
from ..adapters.documents import copy_metadata
from ..chunks import Chunk, ChunkSelection, SelectedChunk, select_chunks
from ..selection_options import SelectionOptions, selection_specs, with_settings_signature
from .base import QRHeadRerank

DocumentLike = BaseNode | str


def default_splitter() -> SentenceSplitter:
    """The splitter used when none is given: sentence-aware chunks of about 256 tokens, 32 overlapping."""
    return SentenceSplitter(chunk_size=256, chunk_overlap=32)


class QRHeadChunkRetriever(BaseRetriever):
    """Retrieve the chunks of ONE long document that a question needs.

    The document is split once (with ``splitter``, any LlamaIndex ``TextSplitter``; default
    :func:`default_splitter`), each chunk located in the document text. Each query scores every chunk in
    one QRHead pass (windows when the document exceeds the scorer's context) and returns the best
    chunks as ``NodeWithScore``: ``TextNode`` with ``start_char_idx``/``end_char_idx`` into the
    document text (``document.text[start:end] == node.text``), a ``SOURCE`` relationship to the document,
    the document's metadata plus ``chunk_index``.

    Selection: ``top_k`` chunks (default 5), or as many as fit ``token_budget`` tokens (greedy by
    score; counted with ``count_tokens``, default the scorer's tokenizer), optionally returned in
    document order (``keep_document_order``). The scorer is configured by ``reranker`` (a
    :class:`QRHeadRerank`: model, heads, device, options; its ``top_n`` is not used here); the chunks
    sit in the prompt in reading order (``candidate_order="as_given"``; ``None`` = the reranker's).
    ``first_stage``: ``"auto"`` (default) fuses the heads' scores with BM25 over the chunks when the
    reranker's head set recommends a fusion (the embedded default's does), ``"bm25"`` always, ``None``
    never (see :func:`~qrhead_integrations.chunks.select_chunks`).

    The selection settings are :class:`~qrhead_integrations.selection_options.SelectionOptions`' (keywords,
    or ``options``), readable and assignable as attributes (``retriever.top_k = 3``, validated) and held
    together in :attr:`selection_options`.
    """

    @with_settings_signature()
    def __init__(
        self,
        document: DocumentLike,
        *,
        reranker: QRHeadRerank | None = None,
        splitter: Any = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        options: SelectionOptions | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        if isinstance(document, str):
            document = Document(text=document)
        if not isinstance(document, BaseNode):
            raise TypeError("document must be a LlamaIndex node/Document or a string, "
                            f"not {type(document).__name__}")
        if splitter is not None and not hasattr(splitter, "split_text"):
            raise TypeError("splitter must be a LlamaIndex TextSplitter (with .split_text)")
        self.document = document
        self.reranker = reranker if reranker is not None else QRHeadRerank()
        self.splitter = splitter if splitter is not None else default_splitter()
        self.selection_options = SelectionOptions.build(options, **settings)  # fails early, as the selection would
        self._chunks = ChunkCache()

    @classmethod
    def from_llm(cls, llm: Any, document: DocumentLike, *, heads: Any = None, model_name: str | None = None,
                 reranker_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> QRHeadChunkRetriever:
        """A chunk retriever that scores with ``llm``'s own loaded weights (LlamaIndex ``HuggingFaceLLM``):
        no second model in memory. ``reranker_kwargs`` go to :meth:`QRHeadRerank.from_llm` (scoring
        options), the rest to this class (``top_k``, ``token_budget``, ``trim_to_evidence``...)."""
        reranker = QRHeadRerank.from_llm(llm, heads=heads, model_name=model_name, **(reranker_kwargs or {}))
        return cls(document, reranker=reranker, **kwargs)

    @property
    def text(self) -> str:
        """The document text that offsets refer to."""
        return self.document.get_content(metadata_mode=MetadataMode.NONE)

    @property
    def chunks(self) -> list[Chunk]:
        """The document's chunks with their offsets (split on first use, again if the document or
        splitter is replaced)."""
        return self._chunks.get(self.text, self.splitter.split_text, source_id=self.document.node_id,
                                splitter=self.splitter)

    def select(self, query: str) -> ChunkSelection:
        """The framework-free selection (offsets, scores, token counts) for ``query``."""
        return select_chunks(self.reranker.scorer, query, self.chunks, options=self.selection_options)

    def select_many(self, queries: list[str], *, return_exceptions: bool = False) -> list[ChunkSelection | Exception]:
        """:meth:`select` for several queries, with the chunks encoded once (equal results)."""
        return select_many(self.reranker.scorer, queries, self.chunks, return_exceptions=return_exceptions,
                           options=self.selection_options)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [chunk_node(self.document, c) for c in self.select(query_bundle.query_str)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _setting(name: str, doc: str) -> property:
    """An attribute for one selection setting: read from, and assigned (validated) into, ``selection_options``."""
    def get(self: QRHeadChunkRetriever) -> Any:
        return getattr(self.selection_options, name)

    def set_(self: QRHeadChunkRetriever, value: Any) -> None:
        self.selection_options = self.selection_options.replace(**{name: value})

    return property(get, set_, doc=doc)


for _spec in selection_specs():
    setattr(QRHeadChunkRetriever, _spec.name, _setting(_spec.name, _spec.description))


def chunk_node(document: BaseNode, chunk: SelectedChunk) -> NodeWithScore:
    """A selected chunk as a ``NodeWithScore`` whose node points back at ``document``."""
    added: dict[str, Any] = {"chunk_index": chunk.index}
    if chunk.truncated:
        added["qrhead_truncated"] = True
    if chunk.trimmed:  # only the evidence sentences of the chunk: several pieces may share its index
        added.update(qrhead_trimmed=True, chunk_start=chunk.chunk_start, chunk_end=chunk.chunk_end)
    hidden = list(added)
    piece = f"-{chunk.start}" if chunk.trimmed else ""
    node = TextNode(
        id_=f"{document.node_id}-chunk-{chunk.index}{piece}",
        text=chunk.text,
        start_char_idx=chunk.start,
        end_char_idx=chunk.end,
        metadata={**copy_metadata(document.metadata), **added},
        excluded_llm_metadata_keys=list(document.excluded_llm_metadata_keys)
        + [k for k in hidden if k not in document.excluded_llm_metadata_keys],
        excluded_embed_metadata_keys=list(document.excluded_embed_metadata_keys)
        + [k for k in hidden if k not in document.excluded_embed_metadata_keys],
        relationships={NodeRelationship.SOURCE: document.as_related_node_info()},
    )
    return NodeWithScore(node=node, score=float(chunk.score))


@with_settings_signature()
def select_document_chunks(
    document: DocumentLike,
    query: str,
    *,
    reranker: QRHeadRerank | None = None,
    splitter: Any = None,
    **settings: Any,
) -> list[NodeWithScore]:
    """One-shot form of :class:`QRHeadChunkRetriever`: the best chunks of ``document`` for ``query``."""
    return QRHeadChunkRetriever(document, reranker=reranker, splitter=splitter, **settings).retrieve(query)
