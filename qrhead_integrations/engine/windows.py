"""Split passages that do not fit one prompt into windows whose scores stay comparable.

Method (documented in docs/engine.md): the number of windows ``W`` is the smallest that fits the
token budget; passages are dealt round-robin over the *input* order (best-first from the first
stage), so every window gets the same number of passages (+-1) and the same mix of first-stage ranks.
Each window is scored on its own (prefix, real query, null query), and a passage's attention mass is
multiplied by ``n_w / mean(n_w)``: attention is a distribution shared by the passages of a window, so
this puts the masses of windows with one passage more or less on the same scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ContextBudgetError


class WindowError(ContextBudgetError):
    """The passages cannot be laid out within the token budget."""


def plan_windows(lengths: Sequence[int], available: int) -> list[list[int]]:
    """Indices (input order) of each window; every window's total length fits ``available``."""
    n = len(lengths)
    if n == 0:
        return []
    if available <= 0:
        raise WindowError("the token budget leaves no room for passages")
    too_long = [i for i, l in enumerate(lengths) if l > available]
    if too_long:
        raise WindowError(f"passages {too_long[:5]} are longer than the budget of {available} tokens")
    total = sum(lengths)
    if total <= available:
        return [list(range(n))]
    count = max(2, math.ceil(total / available))
    while count <= n:
        windows = [list(range(w, n, count)) for w in range(count)]
        if all(sum(lengths[i] for i in win) <= available for win in windows):
            return windows
        count += 1
    return [[i] for i in range(n)]


def window_scales(windows: Sequence[Sequence[int]], n: int) -> list[float]:
    """Per-passage factor ``n_w / mean(n_w)`` (1.0 when everything fits one window)."""
    scales = [1.0] * n
    if len(windows) <= 1:
        return scales
    mean = n / len(windows)
    for win in windows:
        for i in win:
            scales[i] = len(win) / mean
    return scales
