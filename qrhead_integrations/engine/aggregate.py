"""From per-token attention mass to per-passage scores.

A query pass yields, for every captured head, the attention mass on each prompt token (averaged over the
query rows). A passage's score is the sum over its tokens of the calibrated mass (real query minus null
query), combined over the selected heads with their weights (uniform unless the head set was fitted)
and optionally with the authors' token filter: within each passage, tokens whose calibrated,
head-combined mass is not above ``mean - 2 * std`` of that passage's tokens are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .heads import HeadSet


def head_weights(heads: HeadSet, reduction: str) -> np.ndarray:
    """Weights of the selected heads: the head set's fitted weights (or uniform), normalised to sum 1
    for ``"mean"``; for ``"sum"`` uniform weights are 1 each (fitted weights are scaled to sum to the
    number of heads), which is the mean times the number of heads."""
    w = np.ones(len(heads)) if heads.weights is None else np.asarray(heads.weights, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        w = np.ones(len(heads))
        total = w.sum()
    w = w / total
    return w * len(heads) if reduction == "sum" else w


def passage_sums(tokens: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """``[..., T]`` per-token values -> ``[..., N]`` sums over each span ``[a, b)``."""
    cum = np.concatenate([np.zeros(tokens.shape[:-1] + (1,)), np.cumsum(tokens, axis=-1)], axis=-1)
    a = np.array([s[0] for s in spans], dtype=np.int64)
    b = np.array([s[1] for s in spans], dtype=np.int64)
    return cum[..., b] - cum[..., a]


def filtered_sum(values: np.ndarray) -> float:
    """The authors' per-passage filter: the sum of the values strictly above ``mean - 2 * std`` (sample std).

    One value, or values that are all equal (std 0), are kept whole (the reference code would drop all
    of them and return 0, or NaN for one token).
    """
    if values.size <= 1:
        return float(values.sum())
    std = values.std(ddof=1)
    if std == 0:
        return float(values.sum())
    return float(values[values > values.mean() - 2 * std].sum())


def passage_scores(real: np.ndarray, null: np.ndarray | None, spans: Sequence[tuple[int, int]],
                   weights: np.ndarray, token_filter: str | None) -> np.ndarray:
    """Scores of the passages at ``spans`` from ``[heads, T]`` per-token masses (``null`` None: no calibration)."""
    mass = real if null is None else real - null
    combined = weights @ mass  # [T]
    if token_filter is None:
        return passage_sums(combined, spans)
    return np.array([filtered_sum(combined[a:b]) for a, b in spans])


def per_head_filtered(real: np.ndarray, null: np.ndarray | None, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """``[heads, N]``: the filter applied to each head on its own (the authors' detection)."""
    mass = real if null is None else real - null
    return np.array([[filtered_sum(mass[h, a:b]) for a, b in spans] for h in range(mass.shape[0])])


@dataclass
class HeadMasses:
    """Per-head attention mass of every passage, in input order (for analysis, detection and evaluation).

    ``real`` and ``null`` are ``[len(heads), N]`` token sums (window-scaled); ``filtered`` holds the
    calibrated per-head masses after the token filter when the scorer uses one.
    """

    heads: HeadSet
    real: np.ndarray
    null: np.ndarray | None
    scale: np.ndarray
    truncated: list[bool] = field(default_factory=list)
    window: list[int] = field(default_factory=list)
    filtered: np.ndarray | None = None

    def rows(self, heads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
        if heads is None:
            return np.arange(len(self.heads))
        pos = {h: i for i, h in enumerate(self.heads.heads)}
        try:
            return np.array([pos[tuple(h)] for h in heads], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"head {exc.args[0]} was not captured") from None

    def calibrated(self) -> np.ndarray:
        """``[heads, N]`` calibrated masses (filtered per head when the scorer filters tokens)."""
        if self.filtered is not None:
            return self.filtered
        if self.null is None:
            raise ValueError("these masses were computed without the null query (calibrate=False)")
        return self.real - self.null

    def per_head(self, calibrate: bool = True) -> np.ndarray:
        return self.calibrated() if calibrate else self.real

    def scores(self, heads: Sequence[tuple[int, int]] | None = None, calibrate: bool = True) -> np.ndarray:
        """Mean over ``heads`` (default: all captured heads) of the per-head masses."""
        return self.per_head(calibrate)[self.rows(heads)].mean(axis=0)
