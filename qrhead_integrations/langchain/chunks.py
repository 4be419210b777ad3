"""Chunk selection in one long document, for LangChain: split with a LangChain text splitter, score every
chunk in one QRHead pass, return the best chunks as Documents with exact character offsets."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_text_splitters import RecursiveCharacterTextSplitter, TextSplitter
from pydantic import ConfigDict, Field, PrivateAttr, create_model, field_validator, model_validator
from typing_extensions import Self

from ..adapters.chunk_selection import ChunkCache, select_many
from ..adapters.documents import copy_metadata
from ..adapters.fields import selection_fields
from ..chunks import Chunk, ChunkSelection, SelectedChunk, select_chunks
from ..selection_options import SELECTION_NAMES, SelectionOptions, with_settings_signature
from ._steps import Call, Steps
from .base import BatchSteps, QRHeadReranker, astart_run, end_runs, finish_batch, positive_int, start_run


def default_text_splitter() -> RecursiveCharacterTextSplitter:
    """The splitter used when none is given: ~1,000-character chunks (about 250 tokens), 100 overlapping."""
    return RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)


def _all_chunks_reranker() -> QRHeadReranker:
    return QRHeadReranker(top_n=None)


#: LangChain's name for a setting of :class:`SelectionOptions` (the number of results is ``k``).
FIELD_NAMES = {name: {"top_k": "k"}.get(name, name) for name in SELECTION_NAMES}
#: The selection settings as pydantic fields, generated from :class:`SelectionOptions`.
_SelectionFields = create_model("_SelectionFields", **selection_fields(FIELD_NAMES))


class QRHeadChunkRetriever(BatchSteps, BaseRetriever, _SelectionFields):
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
    (``keep_document_order``). The scorer is configured by ``reranker`` (its ``top_n`` is not used; its
    ``score_threshold`` / ``relative_score_threshold`` drop chunks before the selection); the chunks sit
    in the prompt in reading order (``candidate_order="as_given"``; ``None`` = the reranker's).
    ``first_stage``: ``"auto"`` (default) fuses the heads' scores with BM25 over the chunks when the
    reranker's head set recommends a fusion (the embedded default's does), ``"bm25"`` always, ``None``
    never (see :func:`~qrhead_integrations.chunks.select_chunks`).

    ``batch`` / ``abatch`` (several questions about the document) read the chunks once and add one short
    pass per question; the results are those of one ``invoke`` per question.

    Serialisation (``model_dump`` / ``model_dump_json`` / ``model_validate``) covers the document, the
    reranker's settings and the selection settings. ``text_splitter`` and ``count_tokens`` are live
    objects and are excluded: pass them again when loading (otherwise the defaults apply). Pickling keeps
    everything (a splitter built on a closure, e.g. ``from_huggingface_tokenizer``, may not pickle).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    document: Document
    reranker: QRHeadReranker = Field(default_factory=_all_chunks_reranker)
    text_splitter: TextSplitter = Field(default_factory=default_text_splitter, exclude=True)
    _chunks: ChunkCache = PrivateAttr(default_factory=ChunkCache)

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

    @model_validator(mode="after")
    def _check_selection(self) -> Self:
        _ = self.selection_options  # what pydantic does not check (count_tokens) fails here, not at the first query
        return self

    @property
    def top_k(self) -> int | None:
        return self.k

    @property
    def selection_options(self) -> SelectionOptions:
        """The chunk-selection settings of these fields."""
        return SelectionOptions(**{name: getattr(self, field) for name, field in FIELD_NAMES.items()})

    def _selection(self, k: int | None) -> SelectionOptions:
        options = self.selection_options
        return options if k is None else options.replace(top_k=positive_int("k", k))

    @classmethod
    def from_llm(cls, llm: Any, document: Document | str, *, heads: Any = None, model_name: str | None = None,
                 reranker_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> QRHeadChunkRetriever:
        """A chunk retriever that scores with ``llm``'s own loaded weights (``HuggingFacePipeline`` or
        ``ChatHuggingFace``): no second model in memory. ``reranker_kwargs`` go to
        :meth:`QRHeadReranker.from_llm` (scoring options), the rest to this class (``k``, ``token_budget``...)."""
        reranker = QRHeadReranker.from_llm(llm, heads=heads, model_name=model_name,
                                           **{"top_n": None, **(reranker_kwargs or {})})
        return cls(document=document, reranker=reranker, **kwargs)

    def select(self, query: str, k: int | None = None) -> ChunkSelection:
        """The framework-free selection (offsets, scores, token counts) for ``query``."""
        return select_chunks(self.reranker.scorer, query, self.chunks, options=self._selection(k))

    def select_many(self, queries: list[str], k: int | None = None, *,
                    return_exceptions: bool = False) -> list[ChunkSelection | Exception]:
        """:meth:`select` for several queries, with the chunks encoded once (equal results)."""
        return select_many(self.reranker.scorer, queries, self.chunks, return_exceptions=return_exceptions,
                           options=self._selection(k))

    def _documents(self, selection: ChunkSelection) -> list[Document]:
        return [chunk_document(self.document, c, self.reranker.score_key) for c in selection]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return self._documents(self.select(query, k))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return self._documents(await asyncio.to_thread(self.select, query, k))

    # --- several queries ----------------------------------------------------------------------------
    def _select_documents(self, inputs: list[str], k: int | None, unknown: dict[str, Any]) -> list[Any]:
        if unknown:  # what invoke would raise for each input
            return [TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")] * len(inputs)
        try:
            selections = self.select_many(inputs, k, return_exceptions=True)
        except Exception as exc:  # e.g. a bad k, or the splitter failing: every input fails with it
            return [exc] * len(inputs)
        return [s if isinstance(s, Exception) else self._documents(s) for s in selections]

    def _batch_steps(self, inputs: list[str], config: RunnableConfig | list[RunnableConfig] | None,
                     return_exceptions: bool, kwargs: dict[str, Any]) -> Steps[list[list[Document]]]:
        configs = get_config_list(config, len(inputs))
        kwargs.pop("run_id", None)
        k = kwargs.pop("k", None)
        runs = []
        for q, c in zip(inputs, configs):
            runs.append((yield Call(lambda q=q, c=c: start_run(self, q, c, kwargs),
                                    lambda q=q, c=c: astart_run(self, q, c, kwargs))))
        out = yield Call(lambda: self._select_documents(inputs, k, kwargs),
                         lambda: asyncio.to_thread(self._select_documents, inputs, k, kwargs))
        yield from end_runs(runs, out)
        return finish_batch(out, return_exceptions)


def chunk_document(document: Document, chunk: SelectedChunk, score_key: str = "relevance_score") -> Document:
    """A selected chunk as a new Document pointing back at ``document`` (metadata copied, offsets added)."""
    metadata = copy_metadata(document.metadata)
    metadata.update(start_index=chunk.start, end_index=chunk.end, chunk_index=chunk.index,
                    source_id=document.id)
    metadata[score_key] = float(chunk.score)
    if chunk.truncated:
        metadata["qrhead_truncated"] = True
    if chunk.trimmed:  # only the evidence sentences of the chunk: several pieces may share its index
        metadata.update(qrhead_trimmed=True, chunk_start=chunk.chunk_start, chunk_end=chunk.chunk_end)
    piece = f"-{chunk.start}" if chunk.trimmed else ""
    return Document(
        page_content=chunk.text,
        metadata=metadata,
        id=f"{document.id}-chunk-{chunk.index}{piece}" if document.id else None,
    )


@with_settings_signature()
def select_document_chunks(
    document: Document | str,
    query: str,
    *,
    reranker: QRHeadReranker | None = None,
    text_splitter: TextSplitter | None = None,
    **settings: Any,
) -> list[Document]:
    """One-shot form of :class:`QRHeadChunkRetriever`: the best chunks of ``document`` for ``query``
    (``settings``: those of :class:`SelectionOptions`, ``top_k`` included)."""
    options = SelectionOptions.build(**settings)
    kwargs: dict[str, Any] = {field: getattr(options, name) for name, field in FIELD_NAMES.items()}
    if reranker is not None:
        kwargs["reranker"] = reranker
    if text_splitter is not None:
        kwargs["text_splitter"] = text_splitter
    return QRHeadChunkRetriever(document=document, **kwargs).invoke(query)
