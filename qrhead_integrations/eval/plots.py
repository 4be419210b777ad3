"""Plots: head-score heat maps (layers x heads) and simple line charts for benchmarks."""

from __future__ import annotations

import os

import numpy as np

from ..engine.heads import HeadSet


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("plots need matplotlib: pip install 'qrhead-integrations[plot]'") from exc
    return plt


def plot_head_scores(head_set: HeadSet, path: str | os.PathLike[str], title: str | None = None) -> None:
    """Heat map of every head's detection score; the selected heads are outlined."""
    if head_set.detection_scores is None:
        raise ValueError("this head set carries no per-head scores (detection_scores)")
    plt = _pyplot()
    matrix = np.asarray(head_set.detection_scores)  # [layers, heads]
    layers, heads = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * heads + 2), max(3.0, 0.22 * layers + 1.5)))
    lim = np.abs(matrix).max() or 1.0
    im = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
    for rank, (l, h) in enumerate(head_set.heads, start=1):
        ax.add_patch(plt.Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        if rank <= 16:
            ax.text(h, l, str(rank), ha="center", va="center", fontsize=6)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(0, heads, max(1, heads // 16)))
    ax.set_yticks(range(0, layers, max(1, layers // 16)))
    method = head_set.info.get("method", "score")
    ax.set_title(title or f"{head_set.model or ''}\n{method}, {head_set.info.get('examples', '?')} examples",
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="mean attention mass on gold passages")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
