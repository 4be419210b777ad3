"""Lexical first stage: BM25 (``bm25s``) over a small set of texts, e.g. one document's chunks.

The chunk selectors use it as their first stage (``first_stage="auto"``, the default, when the head set
recommends a fusion; ``"bm25"`` always): every chunk gets its BM25 score for the question, and the QRHead
scores are fused with those scores exactly as a re-ranker fuses with its retriever's scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .engine.errors import QRHeadValueError

#: ``first_stage`` values of a chunk selection: ``"auto"`` (BM25 when the scorer fuses, see
#: :func:`resolve_first_stage`), ``"bm25"`` (always), or ``None`` (the heads alone).
FIRST_STAGES = ("auto", "bm25")


def check_first_stage(first_stage: str | None, first_stage_scores: Sequence[float] | None = None) -> str | None:
    """``first_stage`` if it is ``None`` or a known name, else a clear error (also when ``"bm25"`` and
    explicit ``first_stage_scores`` are both given: one first stage at a time)."""
    if first_stage is None:
        return None
    if not isinstance(first_stage, str) or first_stage not in FIRST_STAGES:
        raise QRHeadValueError(f"first_stage must be one of {', '.join(map(repr, FIRST_STAGES))} or None, "
                               f"not {first_stage!r}")
    if first_stage != "auto" and first_stage_scores is not None:
        raise QRHeadValueError(f"pass either first_stage={first_stage!r} or first_stage_scores, not both")
    return first_stage


def resolve_first_stage(first_stage: str | None, first_stage_scores: Sequence[float] | None, scorer: Any) -> str | None:
    """The first stage a chunk selection computes: ``"auto"`` is ``"bm25"`` when no ``first_stage_scores``
    are given and the scorer fuses with a first stage (its head set recommends a fusion, as the embedded
    default's does, or the scorer sets one), else nothing: the same rule as re-ranking, where a head set's
    recommended fusion applies whenever there is a first stage."""
    first_stage = check_first_stage(first_stage, first_stage_scores)
    if first_stage == "auto":
        effective = getattr(scorer, "effective_options", scorer.options)
        return "bm25" if first_stage_scores is None and effective.fusion is not None else None
    return first_stage


class BM25:
    """BM25 over ``texts`` with ``bm25s`` (Lucene variant, English stemming and stopwords).

    Defaults k1=0.9, b=0.4 (Anserini's BEIR settings). ``ids`` name the texts for :meth:`search`.
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str], k1: float = 0.9, b: float = 0.4,
                 stemmer: str | None = "english", stopwords: str | None = "en") -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
        self.ids = list(ids)
        self._stem = None
        if stemmer:
            import Stemmer

            self._stem = Stemmer.Stemmer(stemmer)
        self._stopwords = stopwords
        tokens = bm25s.tokenize(list(texts), stopwords=stopwords, stemmer=self._stem, show_progress=False)
        self.index = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.index.index(tokens, show_progress=False)

    @classmethod
    def over(cls, texts: Sequence[str], **kwargs: Any) -> BM25:
        """An index over ``texts`` named by their positions."""
        return cls([str(i) for i in range(len(texts))], texts, **kwargs)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        import bm25s

        k = min(k, len(self.ids))
        tokens = bm25s.tokenize(list(queries), stopwords=self._stopwords, stemmer=self._stem, show_progress=False)
        docs, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(self.ids[int(d)], float(s)) for d, s in zip(dr, sr)] for dr, sr in zip(docs, scores)]

    def scores(self, query: str) -> list[float]:
        """Every text's score for ``query``, in index order (0.0 for texts without a query term)."""
        hits = dict(self.search([query], len(self.ids))[0]) if self.ids else {}
        return [float(hits.get(i, 0.0)) for i in self.ids]

    def score_texts(self, query: str, texts: Sequence[str]) -> list[float]:
        """BM25 scores of ``texts`` (their own small index) for ``query``, in input order."""
        small = BM25.over(texts, stemmer="english" if self._stem else None, stopwords=self._stopwords)
        return small.scores(query)


def bm25_scores(query: str, texts: Sequence[str]) -> list[float]:
    """BM25 scores of ``texts`` for ``query`` (an index over just these texts), in input order."""
    return BM25.over(texts).scores(query) if texts else []
