"""BM25 (``bm25s``, Lucene variant, English stemming) over a small set of texts: the lexical first stage
a ranking computes over its own candidates when the caller gives no first-stage scores
(``first_stage="bm25"``, what ``"auto"`` resolves to for head sets that fuse). Order-free: the scores
depend on the texts and the query only, never on the order the texts arrive in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any


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


def passage_bm25(query: str, passages: Sequence[Any]) -> list[float]:
    """BM25 over ``passages`` (engine ``Passage`` objects: title and text) for ``query``, in input order: the
    lexical first stage a ranking computes over its own candidates."""
    return bm25_scores(query, [f"{p.title}\n{p.text}" if p.title else p.text for p in passages])


def bm25_scores(query: str, texts: Sequence[str]) -> list[float]:
    """BM25 scores of ``texts`` for ``query`` (an index over just these texts), in input order."""
    return BM25.over(texts).scores(query) if texts else []
