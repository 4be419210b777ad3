"""What the chunk retrievers share: :func:`select_many` (several queries over one encoding of the
chunks) and :class:`ChunkCache` (a document's located chunks, dropped when pickled)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..chunks import Chunk, ChunkSelection, DocumentChunks, select_chunks, selection_scorer
from ..engine.batch import shared_encoding
from ..engine.options import ScoringOptions
from ..engine.ranking import RankedPassage, check_query
from ..engine.scoring import EncodedPassages, QRHeadScorer
from ..selection_options import SelectionOptions, with_settings_signature


class SharedEncodingScorer:
    """What :func:`~qrhead_integrations.chunks.select_chunks` needs of a scorer, answering ``rank`` from
    one shared encoding of the chunks (anything else goes to the real scorer)."""

    def __init__(self, scorer: QRHeadScorer, encoded: EncodedPassages | None, texts: list[str]) -> None:
        self.scorer = scorer
        self.encoded = encoded
        self.texts = texts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    @property
    def options(self) -> ScoringOptions:
        return self.scorer.options

    def with_options(self, **changes: Any) -> SharedEncodingScorer:
        return SharedEncodingScorer(self.scorer.with_options(**changes), None, self.texts)

    def rank(self, query: str, passages: Sequence[Any], top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None, **extra: Any) -> list[RankedPassage]:
        if self.encoded is not None and list(passages) == self.texts:
            return self.encoded.rank(query, top_k, first_stage_scores, **extra)
        return self.scorer.rank(query, passages, top_k=top_k, first_stage_scores=first_stage_scores, **extra)


@with_settings_signature()
def select_many(scorer: QRHeadScorer, queries: Sequence[str], chunks: Sequence[Chunk], *,
                return_exceptions: bool = False, first_stage_scores: Sequence[float] | None = None,
                options: SelectionOptions | None = None, **settings: Any) -> list[ChunkSelection | Exception]:
    """``[select_chunks(scorer, q, chunks, ...) for q in queries]`` with one encoding of the chunks for all
    queries (when they fit one prompt; else query by query). Results are exactly those of the single
    calls. ``return_exceptions`` as in :func:`~qrhead_integrations.engine.batch.rank_jobs`."""
    options = SelectionOptions.build(options, **settings)
    chunks = list(chunks)
    out: list[Any] = []
    valid = []
    for q in queries:
        try:
            valid.append(check_query(q))
        except Exception:
            if not return_exceptions:
                raise
    scorer = selection_scorer(scorer, options.candidate_order, first_stage=options.first_stage,
                              first_stage_scores=first_stage_scores)
    texts = [c.text for c in chunks if isinstance(c, Chunk)]
    encoded = None
    if len(valid) > 1 and texts and len(texts) == len(chunks):
        try:
            encoded = shared_encoding(scorer, texts, valid)
        except Exception:
            encoded = None
    shared = SharedEncodingScorer(scorer, encoded, texts)
    for q in queries:
        try:
            out.append(select_chunks(shared, q, chunks, first_stage_scores=first_stage_scores, options=options))
        except Exception as exc:
            if not return_exceptions:
                raise
            out.append(exc)
    return out


class ChunkCache(DocumentChunks):
    """:class:`~qrhead_integrations.chunks.DocumentChunks` that survives pickling (the located chunks are
    dropped and found again on first use)."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        DocumentChunks.__init__(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> ChunkCache:
        return ChunkCache()
