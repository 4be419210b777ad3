"""Fuse QRHead scores with the first stage's (reciprocal rank or normalised linear).

``first_stage_scores=None`` reads the input position as the first-stage rank (``first_stage="order"``);
every other input is order-free: equal scores share a rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Fusion = Literal["rrf", "linear"]
FUSIONS = ("rrf", "linear")


def ranks_of(scores: Sequence[float]) -> np.ndarray:
    """1-based ranks, best (highest) first; tied scores share their mean rank, so a rank never depends on
    where a passage sits in the input."""
    s = np.asarray(scores, dtype=np.float64)
    _, group, size = np.unique(-s, return_inverse=True, return_counts=True)  # groups of equal scores, best first
    better = np.cumsum(size) - size  # how many score strictly higher than each group
    return (better + (size + 1) / 2.0)[group.reshape(-1)]


def first_stage_ranks(n: int, first_stage_scores: Sequence[float] | None) -> np.ndarray:
    if first_stage_scores is None:
        return np.arange(1, n + 1, dtype=np.float64)
    if len(first_stage_scores) != n:
        raise ValueError(f"first_stage_scores has {len(first_stage_scores)} values for {n} passages")
    return ranks_of(first_stage_scores)


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return np.zeros_like(x) if span == 0 else (x - x.min()) / span


def fuse(
    qrhead_scores: Sequence[float],
    first_stage_scores: Sequence[float] | None = None,
    method: Fusion = "rrf",
    weight: float = 0.5,
    rrf_k: int = 60,
) -> list[float]:
    """Fused scores (higher is better). ``weight`` is the QRHead share, ``1 - weight`` the first stage's.

    ``rrf``: ``w / (k + rank_qrhead) + (1 - w) / (k + rank_first_stage)``.
    ``linear``: ``w * minmax(qrhead) + (1 - w) * minmax(first stage)``; without first-stage scores the
    first stage's normalised reciprocal rank stands in for them.
    """
    if method not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, not {method!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError("fusion weight must be between 0 and 1")
    qr = np.asarray(qrhead_scores, dtype=np.float64)
    n = len(qr)
    if n == 0:
        return []
    fs_ranks = first_stage_ranks(n, first_stage_scores)
    if method == "rrf":
        fused = weight / (rrf_k + ranks_of(qr)) + (1.0 - weight) / (rrf_k + fs_ranks)
    else:
        fs = (np.asarray(first_stage_scores, dtype=np.float64) if first_stage_scores is not None
              else 1.0 / fs_ranks)
        fused = weight * _minmax(qr) + (1.0 - weight) * _minmax(fs)
    return [float(v) for v in fused]
