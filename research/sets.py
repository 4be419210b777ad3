"""The evaluation and detection sets of the quality study, by name, built from ``../shared/data``.

Every set is a :class:`~qrhead_integrations.eval.rerank.RerankData`: queries, each with its first-stage
candidates (best first, with first-stage scores) and relevance judgements.

- ``scifact-test`` / ``scifact-train``: BEIR SciFact claims, BM25 (bm25s) top-20 over the whole corpus.
- ``hotpotqa``: HotpotQA-100, each question's own 10 paragraphs (2 gold), BM25 scores (whole corpus).
- ``nq``: NQ-open multi-document (:func:`qrhead_integrations.eval.sets.nq_multidoc`): each question's gold
  passage among 19 distractors, the BM25-nearest passages of *other* questions that do not contain one of
  the question's answers. In first-stage order the gold passage is wherever BM25 puts it, shuffled it is
  anywhere. Questions are drawn by a seeded shuffle: ``skip``/``n`` select disjoint slices (detection
  0-255, evaluation from 1000 on).
"""

from __future__ import annotations

from pathlib import Path

from qrhead_integrations.eval.rerank import RerankData, load_rerank_data
from qrhead_integrations.eval.sets import nq_multidoc

SETS = ("scifact-test", "scifact-train", "hotpotqa", "nq")


def load_set(name: str, root: str | Path, *, n: int | None = None, skip: int = 0, seed: int = 0) -> RerankData:
    """The named set (``n`` seeded queries after ``skip``; all when ``n`` is None)."""
    root = Path(root)
    if name == "scifact-test":
        return load_rerank_data(root / "scifact", "test", 20, n, seed, skip=skip)
    if name == "scifact-train":
        return load_rerank_data(root / "scifact", "train", 20, n, seed, skip=skip)
    if name == "hotpotqa":
        return load_rerank_data(root / "hotpotqa-100", "test", 10, n, seed, run="given", skip=skip, bm25_scores=True)
    if name == "nq":
        return nq_multidoc(root / "nq-open-oracle", n=n or 200, skip=skip, seed=seed)
    raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")
