"""Select the chunks of one long document that answer a question (the paper's long-context use).

Framework-free core of the chunk selectors in :mod:`qrhead_integrations.llama_index` and
:mod:`qrhead_integrations.langchain`::

    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.chunks import locate_chunks, select_chunks, split_by_tokens

    scorer = QRHeadScorer.from_pretrained()
    chunks = split_by_tokens(document, scorer.tokenizer, chunk_tokens=200, overlap_tokens=20)
    # or: chunks = locate_chunks(document, any_splitter(document))
    picked = select_chunks(scorer, "who founded the city?", chunks, token_budget=600,
                           keep_document_order=True)
    for c in picked:
        print(c.rank, c.score, c.start, c.end, document[c.start:c.end] == c.text)

Every chunk is scored in one :meth:`QRHeadScorer.rank` call: all chunks share the prompt (split into
windows with comparable scores when the document exceeds the scorer's context). Offsets are character
offsets into the source document and always satisfy ``document[start:end] == chunk.text``.

``trim_to_evidence=N`` keeps only the N sentences of each selected chunk that hold the most of the heads'
mass (plus ``evidence_context`` neighbouring sentences on each side): fewer generator tokens for the same
evidence, and room in the budget for more chunks. Each kept run of sentences is one
:class:`SelectedChunk` with its own exact offsets.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .engine.evidence import sentence_spans
from .engine.ranking import check_query
from .first_stage import check_first_stage
from .selection_options import SelectionOptions, TokenCounter, token_counter, with_settings_signature

__all__ = [
    "Chunk", "ChunkSelection", "DocumentChunks", "SelectedChunk", "SelectionOptions", "TokenCounter",
    "evidence_pieces", "locate_chunks", "select_chunks", "select_from_ranking", "selection_scorer",
    "split_by_tokens", "token_counter",
]

logger = logging.getLogger("qrhead_integrations")


@dataclass(frozen=True)
class Chunk:
    """A piece of a source document: ``document[start:end] == text``; ``index`` is its position."""

    text: str
    start: int
    end: int
    index: int
    source_id: str | None = None


@dataclass(frozen=True)
class SelectedChunk:
    """A chunk chosen for a query.

    ``score`` is the ranking score (the calibrated QRHead score, or the fused score when the scorer
    fuses with a first stage), ``rank`` its 1-based rank among all chunks, ``tokens`` its length as
    counted for the token budget. ``truncated`` is True when the scorer saw only the start of the chunk
    (``max_passage_tokens``); the text here is always the whole chunk (or, trimmed, the kept sentences).

    With ``trim_to_evidence``, ``trimmed`` is True when only part of the chunk was kept: ``start``/``end``
    and ``text`` are then those of the kept sentences (``document[start:end] == text`` still holds) and
    ``chunk_start``/``chunk_end`` are the whole chunk's offsets. A chunk whose kept sentences are not
    contiguous gives several pieces, each a ``SelectedChunk`` with the chunk's ``index``, ``rank`` and
    ``score``. Untrimmed, ``chunk_start == start`` and ``chunk_end == end``.
    """

    text: str
    start: int
    end: int
    index: int
    score: float
    rank: int
    tokens: int
    source_id: str | None = None
    qrhead_score: float | None = None
    truncated: bool = False
    window: int = 0
    trimmed: bool = False
    chunk_start: int | None = None
    chunk_end: int | None = None


@dataclass(frozen=True)
class ChunkSelection:
    """The selected chunks (in output order) and what the selection was made from."""

    query: str
    chunks: tuple[SelectedChunk, ...]
    num_candidates: int
    tokens: int
    token_budget: int | None = None
    top_k: int | None = None
    keep_document_order: bool = False
    trim_to_evidence: int | None = None

    def __iter__(self) -> Iterator[SelectedChunk]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> SelectedChunk:
        return self.chunks[i]

    def text(self, separator: str = "\n\n") -> str:
        """The selected chunks' texts joined (a context for a generator)."""
        return separator.join(c.text for c in self.chunks)


# --- offsets -------------------------------------------------------------------------------------


def _loose_pattern(text: str) -> re.Pattern[str] | None:
    words = text.split()
    if not words:
        return None
    return re.compile(r"\s*".join(re.escape(w) for w in words))


def locate_chunks(document: str, texts: Sequence[str], *, source_id: str | None = None) -> list[Chunk]:
    """Character offsets of a splitter's chunks in ``document``.

    Splitters emit chunks in document order, possibly overlapping, each one ending after the previous
    one. So each chunk is searched from just after the previous chunk's start, taking the first
    occurrence that ends after the previous chunk's end: repeated or overlapping chunk texts get their
    own positions instead of the first occurrence in the document. A chunk the splitter changed only in
    whitespace (stripped, collapsed or re-joined) is matched ignoring whitespace; the returned chunk's
    ``text`` is always the exact source slice ``document[start:end]``. Whitespace-only chunks are
    dropped (``index`` counts the kept chunks). A chunk that does not occur in the document at all
    raises ``ValueError``.
    """
    if not isinstance(document, str):
        raise TypeError(f"document must be a string, not {type(document).__name__}")
    chunks: list[Chunk] = []
    prev_start, prev_end = -1, 0
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"chunk {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            continue
        span = _find(document, text, prev_start + 1, prev_end)
        if span is None:
            span = _find(document, text, 0, 0)  # out-of-order splitter output: any occurrence
        if span is None:
            raise ValueError(
                f"chunk {i} ({text[:40]!r}...) does not occur in the document, even ignoring whitespace: "
                "the splitter changed its text"
            )
        start, end = span
        chunks.append(Chunk(document[start:end], start, end, len(chunks), source_id))
        prev_start, prev_end = start, end
    return chunks


def _occurrences(document: str, text: str, floor: int) -> Iterator[tuple[int, int]]:
    start = document.find(text, floor)
    if start >= 0:
        while start >= 0:
            yield start, start + len(text)
            start = document.find(text, start + 1)
        return
    pattern = _loose_pattern(text)
    if pattern is None:
        return
    m = pattern.search(document, floor)
    while m is not None:
        yield m.start(), m.end()
        m = pattern.search(document, m.start() + 1)


def _find(document: str, text: str, floor: int, min_end: int) -> tuple[int, int] | None:
    """First occurrence starting at ``floor`` or later that ends after ``min_end`` (else the first one)."""
    first = None
    for span in _occurrences(document, text, floor):
        if first is None:
            first = span
        if span[1] > min_end:
            return span
    return first


def split_by_tokens(
    document: str,
    tokenizer: Any,
    chunk_tokens: int = 256,
    overlap_tokens: int = 32,
    *,
    source_id: str | None = None,
) -> list[Chunk]:
    """Framework-free splitter: chunks of at most ``chunk_tokens`` tokens of a fast tokenizer, each
    overlapping the previous one by about ``overlap_tokens``; offsets come from the tokenizer's offset
    mapping (exact). Chunk edges are moved to word boundaries where one is near (never cutting a word
    unless a single word is longer than half a chunk)."""
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be positive")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError("overlap_tokens must be at least 0 and smaller than chunk_tokens")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("split_by_tokens needs a fast tokenizer (offset mappings)")
    offsets = tokenizer(document, add_special_tokens=False, return_offsets_mapping=True,
                        split_special_tokens=True)["offset_mapping"]
    offsets = [(a, b) for a, b in offsets if b > a]
    n = len(offsets)

    def boundary(i: int) -> bool:
        """Is there a word boundary just before token ``i``?"""
        if i <= 0 or i >= n:
            return True
        s = offsets[i][0]
        return offsets[i - 1][1] < s or document[s - 1].isspace() or document[s].isspace()

    chunks: list[Chunk] = []
    first = 0
    while first < n:
        last = min(first + chunk_tokens, n)
        j = last
        while j > first + max(1, chunk_tokens // 2) and not boundary(j):
            j -= 1
        if boundary(j):
            last = j
        start, end = offsets[first][0], offsets[last - 1][1]
        while start < end and document[start].isspace():
            start += 1
        while end > start and document[end - 1].isspace():
            end -= 1
        if start < end:
            chunks.append(Chunk(document[start:end], start, end, len(chunks), source_id))
        if last >= n:
            break
        nxt = max(last - overlap_tokens, first + 1)
        k = nxt
        while k < last and k - nxt < 8 and not boundary(k):
            k += 1
        first = k if k < last and boundary(k) else nxt
    return chunks


# --- selection -----------------------------------------------------------------------------------


class DocumentChunks:
    """One document's chunks, located once and again only when the text or the splitter changes.

    What both frameworks' chunk retrievers keep between queries; thread-safe."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._chunks: list[Chunk] = []
        self._lock = threading.Lock()

    def get(self, text: str, split: Callable[[str], Sequence[str]], *, source_id: str | None, splitter: Any) -> list[Chunk]:
        key = (text, id(splitter), source_id)
        with self._lock:
            if self._key != key:
                self._chunks = locate_chunks(text, split(text), source_id=source_id)
                self._key = key
            return self._chunks


def selection_scorer(scorer: Any, candidate_order: str | None, *, first_stage: Any = "auto",
                     first_stage_scores: Sequence[float] | None = None) -> Any:
    """The scorer a chunk selection scores with: chunks laid out in ``candidate_order`` (``None``: the
    scorer's own) and the scorer's ``first_stage`` option set to ``first_stage`` (``"auto"``: the
    scorer's own). A new scorer on the same weights when anything changes; the caller's is never changed."""
    first_stage = check_first_stage(first_stage, first_stage_scores)
    overrides: dict[str, Any] = {}
    if candidate_order is not None and candidate_order != scorer.options.candidate_order:
        overrides["candidate_order"] = candidate_order
    effective = getattr(scorer, "effective_options", scorer.options)  # "auto" resolved for its head set
    if first_stage != "auto" and first_stage != effective.first_stage:
        overrides["first_stage"] = first_stage
    return scorer.with_options(**overrides) if overrides else scorer


@with_settings_signature()
def select_chunks(
    scorer: Any,
    query: str,
    chunks: Sequence[Chunk],
    *,
    first_stage_scores: Sequence[float] | None = None,
    options: SelectionOptions | None = None,
    **settings: Any,
) -> ChunkSelection:
    """Score every chunk in one pass and pick the best.

    The settings (``top_k``, ``token_budget``, ``keep_document_order``, ``count_tokens``,
    ``candidate_order``, ``trim_to_evidence``, ``evidence_context``, ``first_stage``) are those of
    :class:`~qrhead_integrations.selection_options.SelectionOptions`, given as keywords or as ``options``
    (keywords override it); see its fields for what each does. ``first_stage_scores``: one per chunk, fused
    with the QRHead scores as a re-ranking fuses with its retriever's scores (the scorer's ``fusion``); not
    together with a computed ``first_stage`` (``"bm25"``, ``"order"``). The caller's scorer is not changed.
    Trimmed chunks: see :class:`SelectedChunk` for the offsets of their pieces.
    """
    opts = SelectionOptions.build(options, **settings)
    scorer = selection_scorer(scorer, opts.candidate_order, first_stage=opts.first_stage,
                              first_stage_scores=first_stage_scores)
    chunks = _check_chunks(chunks)
    top_k = _default_top_k(opts.top_k, opts.token_budget)
    if not chunks:
        check_query(query)
        return ChunkSelection(query, (), 0, 0, opts.token_budget, top_k, opts.keep_document_order,
                              opts.trim_to_evidence)
    extra = {"evidence": opts.trim_to_evidence} if opts.trim_to_evidence else {}
    ranked = scorer.rank(query, [c.text for c in chunks], top_k=None if opts.token_budget is not None else top_k,
                         first_stage_scores=first_stage_scores, **extra)
    if opts.count_tokens is None:
        opts = opts.replace(count_tokens=scorer.count_tokens)
    return select_from_ranking(query, chunks, ranked, options=opts)


def _default_top_k(top_k: int | None, token_budget: int | None) -> int | None:
    """5 chunks when neither a number nor a token budget is given."""
    return 5 if top_k is None and token_budget is None else top_k


def _check_chunks(chunks: Sequence[Chunk]) -> list[Chunk]:
    chunks = list(chunks)
    for i, c in enumerate(chunks):
        if not isinstance(c, Chunk):
            raise TypeError(f"chunk {i} is a {type(c).__name__}; build chunks with locate_chunks or "
                            "split_by_tokens")
    return chunks


def evidence_pieces(chunk: Chunk, evidence: Sequence[Any], context: int = 1) -> list[tuple[int, int]]:
    """Document offsets of the runs of sentences of ``chunk`` to keep: its ``evidence`` sentences (engine
    :class:`~qrhead_integrations.engine.evidence.Evidence`, offsets into the chunk text), each widened by
    ``context`` sentences on both sides, adjacent ones merged. ``[]`` when there is no evidence."""
    spans = sentence_spans(chunk.text)
    keep: set[int] = set()
    for ev in evidence:
        hits = [i for i, (a, b) in enumerate(spans) if a < ev.end and ev.start < b]
        for i in hits:
            keep.update(range(max(0, i - context), min(len(spans), i + context + 1)))
    runs: list[tuple[int, int]] = []
    for i in sorted(keep):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return [(chunk.start + spans[i][0], chunk.start + spans[j][1]) for i, j in runs]


@with_settings_signature()
def select_from_ranking(
    query: str,
    chunks: Sequence[Chunk],
    ranked: Sequence[Any],
    *,
    options: SelectionOptions | None = None,
    **settings: Any,
) -> ChunkSelection:
    """:func:`select_chunks` on a ranking already computed (``ranked``: the scorer's
    :class:`~qrhead_integrations.RankedPassage` results over ``[c.text for c in chunks]``, best first, with
    ``evidence`` when ``trim_to_evidence`` is set), e.g. from ``scorer.encode(chunk_texts).rank(query,
    evidence=N)`` when many questions share one document (the document is read once). ``count_tokens``
    defaults to counting whitespace-separated words (pass a tokenizer or a callable); ``candidate_order``
    and ``first_stage`` shaped the ranking and play no part here."""
    opts = SelectionOptions.build(options, **settings)
    top_k, token_budget, trim_to_evidence = opts.top_k, opts.token_budget, opts.trim_to_evidence
    top_k = _default_top_k(top_k, token_budget)
    chunks = _check_chunks(chunks)
    count = token_counter(opts.count_tokens) if opts.count_tokens is not None else (lambda t: len(t.split()))
    picked: list[SelectedChunk] = []
    used = 0
    taken = 0
    for r in ranked:
        if top_k is not None and taken >= top_k:
            break
        c = chunks[r.index]
        pieces = [(c.start, c.end)]
        if trim_to_evidence:
            pieces = evidence_pieces(c, getattr(r, "evidence", ()) or (), opts.evidence_context) or pieces
        texts = [c.text[a - c.start:b - c.start] for a, b in pieces]
        sizes = [int(count(t)) for t in texts]
        n = sum(sizes)
        if token_budget is not None and used + n > token_budget:
            if used >= token_budget:
                break
            continue
        used += n
        taken += 1
        trimmed = pieces != [(c.start, c.end)]
        for (a, b), text, size in zip(pieces, texts, sizes):
            picked.append(SelectedChunk(
                text=text, start=a, end=b, index=c.index, score=float(r.score), rank=r.rank,
                tokens=size, source_id=c.source_id, qrhead_score=r.qrhead_score, truncated=r.truncated,
                window=r.window, trimmed=trimmed, chunk_start=c.start, chunk_end=c.end,
            ))
    if token_budget is not None and not picked and chunks:
        logger.warning("no chunk fits the token budget of %d tokens (shortest chunk: %d tokens)",
                       token_budget, min(int(count(c.text)) for c in chunks))
    if opts.keep_document_order:
        picked.sort(key=lambda c: (c.start, c.end))
    return ChunkSelection(query.strip(), tuple(picked), len(chunks), used, token_budget, top_k,
                          opts.keep_document_order, trim_to_evidence)
