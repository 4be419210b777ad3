"""What goes into and comes out of the frameworks' documents: metadata copies, first-stage scores read
from the candidates, and a result's evidence sentences as metadata."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

from ..engine.ranking import RankedPassage

logger = logging.getLogger("qrhead_integrations")


def copy_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a metadata dict (what frameworks' splitters do), so nested values (lists, dicts)
    of a returned object are not shared with the caller's; values that cannot be deep-copied are shared."""
    try:
        return copy.deepcopy(metadata)
    except Exception:
        return {key: _copy_value(value) for key, value in metadata.items()}


def _copy_value(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def first_stage_scores(scores: Sequence[Any]) -> list[float] | None:
    """The first-stage scores when every candidate has a finite one, else None: the scorer then applies
    its ``first_stage`` option (the default: BM25 over the candidates), never the input order (a
    documented fallback, logged when only some candidates lack a usable score)."""
    values = []
    bad = 0
    for s in scores:
        f = None
        if s is not None and not isinstance(s, bool):
            try:
                f = float(s)
            except (TypeError, ValueError):
                f = None
        if f is None or not math.isfinite(f):
            bad += 1
        else:
            values.append(f)
    if bad == 0:
        return values
    if values:
        logger.info("%d of %d candidates have no finite first-stage score: the scorer's first_stage option "
                    "stands in for the first stage", bad, bad + len(values))
    return None


def evidence_metadata(r: RankedPassage) -> list[dict[str, Any]]:
    """A result's evidence sentences as JSON-friendly metadata (character offsets into the passage text)."""
    return [{"start": e.start, "end": e.end, "share": round(e.share, 4), "text": e.text} for e in r.evidence]
