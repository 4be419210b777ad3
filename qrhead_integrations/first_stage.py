"""The ``first_stage`` argument of the chunk selectors, checked and applied to a scorer.

A chunk selection has no retriever: its "first stage" is the scorer's ``first_stage`` option (see
:class:`~qrhead_integrations.ScoringOptions`), the same rule every ranking follows when no first-stage
scores are given. ``first_stage="auto"`` keeps the scorer's own setting (for the embedded default: BM25
over the chunks themselves, fused with the heads); ``"bm25"``, ``"order"`` or ``None`` set it for this
selection. BM25 itself lives in :mod:`qrhead_integrations.engine.lexical`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .engine.errors import QRHeadValueError
from .engine.lexical import BM25, bm25_scores
from .engine.options import FIRST_STAGES

__all__ = ["BM25", "FIRST_STAGES", "bm25_scores", "check_first_stage"]


def check_first_stage(first_stage: Any, first_stage_scores: Sequence[float] | None = None) -> str | None:
    """``first_stage`` if it is ``None`` or a known name, else a clear error (also when a computed first
    stage and explicit ``first_stage_scores`` are both given: one first stage at a time)."""
    if first_stage is None:
        return None
    if not isinstance(first_stage, str) or first_stage not in FIRST_STAGES:
        raise QRHeadValueError(f"first_stage must be one of {', '.join(map(repr, FIRST_STAGES))} or None, "
                               f"not {first_stage!r}")
    if first_stage != "auto" and first_stage_scores is not None:
        raise QRHeadValueError(f"pass either first_stage={first_stage!r} or first_stage_scores, not both")
    return first_stage
