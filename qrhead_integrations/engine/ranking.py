"""Scores to a ranking: fusion with the first stage, cut-offs, ties and ``top_k``; and the checks of
ranking arguments, which the scorer runs before any forward pass."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import QRHeadTypeError, QRHeadValueError
from .evidence import Evidence
from .fusion import fuse
from .options import ScoringOptions
from .prompt import Passage


@dataclass(frozen=True)
class RankedPassage:
    """One passage of a ranking. ``index`` is its position in the caller's input.

    ``score`` is what the ranking is sorted by: the calibrated QRHead score, or the fused score when
    the scorer fuses with the first stage (then ``qrhead_score`` keeps the QRHead part).

    ``text`` is always the caller's whole passage. When it was too long and was cut before scoring
    (``truncated``), ``scored_text`` is the beginning of ``text`` that the heads read; else it is None.
    """

    index: int
    score: float
    rank: int
    text: str
    title: str = ""
    truncated: bool = False
    window: int = 0
    qrhead_score: float | None = None
    first_stage_score: float | None = None
    evidence: tuple[Evidence, ...] = ()
    fused: bool = False  # score is the fusion of qrhead_score with the first stage
    scored_text: str | None = None  # the part of text that was scored, when it was truncated


def check_evidence(evidence: Any) -> int:
    if evidence is False or evidence is None:
        return 0
    if evidence is True:
        return 3
    if not isinstance(evidence, int) or evidence < 0:
        raise QRHeadValueError(f"evidence must be True/False or a number of sentences, not {evidence!r}")
    return evidence


def check_query(query: Any, what: str = "query") -> str:
    if not isinstance(query, str):
        raise QRHeadTypeError(f"{what} must be a string, not {type(query).__name__}")
    if not query.strip():
        raise QRHeadValueError(f"{what} is empty")
    return query.strip()


def check_top_k(top_k: Any) -> int | None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise QRHeadValueError(f"top_k must be a non-negative integer or None, not {top_k!r}")
    return top_k


def check_first_stage_scores(values: Any, n: int) -> list[float] | None:
    """The first-stage scores as floats, one per passage and all finite, or None."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise QRHeadTypeError(f"first_stage_scores must be a list of numbers, not {type(values).__name__}")
    if len(values) != n:
        raise QRHeadValueError(f"first_stage_scores has {len(values)} values for {n} passages")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise QRHeadTypeError(f"first_stage_scores[{i}] is {v!r}, not a number")
        f = float(v)
        if not math.isfinite(f):
            raise QRHeadValueError(f"first_stage_scores[{i}] is {f}: every first-stage score must be finite "
                                   "(leave first_stage_scores out to let the first_stage option stand in)")
        out.append(f)
    return out


def rank_passages(passages: Sequence[Passage], scores: Sequence[float], options: ScoringOptions, *,
                  top_k: int | None = None, truncated: Sequence[bool] | None = None,
                  window_of: Sequence[int] | None = None,
                  first_stage_scores: Sequence[float] | None = None,
                  scored: Sequence[Passage] | None = None,
                  tie_order: Sequence[int] | None = None) -> list[RankedPassage]:
    """Passages best first, fused, cut off by the thresholds, at most ``top_k``. Equal scores keep input
    order, or the order of ``tie_order`` (input positions, e.g. the ``"ranked"`` placement's, so that ties
    too are settled without the input order). ``scored``: the passages as scored (cut where
    ``truncated``), when they differ from ``passages``."""
    n = len(scores)
    final = list(scores)
    if options.fusion is not None:
        final = fuse(scores, first_stage_scores, options.fusion, options.fusion_weight, options.rrf_k)
    tie = list(range(n))
    if tie_order is not None:
        for pos, i in enumerate(tie_order):
            tie[i] = pos
    order = sorted(range(n), key=lambda i: (-final[i], tie[i]))
    if options.score_threshold is not None:
        order = [i for i in order if final[i] >= options.score_threshold]
    if options.relative_score_threshold is not None and n:
        hi, lo = max(final), min(final)
        span = hi - lo
        order = [i for i in order if span == 0 or (final[i] - lo) / span >= options.relative_score_threshold]
    if top_k is not None:
        order = order[:top_k]
    truncated = truncated or [False] * n
    window_of = window_of or [0] * n
    return [
        RankedPassage(index=i, score=float(final[i]), rank=r, text=passages[i].text, title=passages[i].title,
                      truncated=bool(truncated[i]), window=int(window_of[i]), qrhead_score=float(scores[i]),
                      first_stage_score=None if first_stage_scores is None else float(first_stage_scores[i]),
                      fused=options.fusion is not None,
                      scored_text=scored[i].text if scored is not None and truncated[i] else None)
        for r, i in enumerate(order, start=1)
    ]
