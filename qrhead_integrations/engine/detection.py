"""Detect a model's query-focused retrieval heads from a handful of labelled examples.

Objective (QRHead paper): for every head, the mean over examples of its QRscore on the gold
passages, i.e. the attention mass from the query's tokens onto the gold passages' tokens; by
default calibrated (minus the same mass for the null query "N/A"), as in the reference detection
code. Every head of every layer is measured in one forward per example (the capture wrapper handles
all heads of a layer in a few matrix products), and the top ``top_k`` heads are kept.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .heads import HeadSet, ModelShape, config_fingerprint
from .prompt import TEMPLATE_VERSION
from .scoring import QRHeadScorer


@dataclass(frozen=True)
class DetectionExample:
    """A query, its candidate passages, and the positions of the gold passages among them."""

    query: str
    passages: tuple[Any, ...]
    gold: frozenset[int]
    qid: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "passages", tuple(self.passages))
        object.__setattr__(self, "gold", frozenset(int(g) for g in self.gold))
        if not self.gold:
            raise ValueError(f"example {self.qid or self.query!r} has no gold passage")
        bad = [g for g in self.gold if not 0 <= g < len(self.passages)]
        if bad:
            raise ValueError(f"example {self.qid or self.query!r}: gold ids {bad} out of range")


@dataclass
class DetectionResult:
    """Per-head scores of a detection run; ``head_set`` holds the selected top heads."""

    head_set: HeadSet
    head_scores: np.ndarray  # [layers, heads], mean over examples
    per_example: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # [examples, layers, heads]


def detect_heads(
    scorer: QRHeadScorer,
    examples: Iterable[DetectionExample],
    top_k: int = 16,
    *,
    calibrate: bool = True,
    shuffle: bool = False,
    seed: int = 0,
    data_description: str = "",
    name: str = "qrhead",
    show_progress: bool = True,
    return_details: bool = False,
) -> HeadSet | DetectionResult:
    """Rank every head by its mean (calibrated) attention mass on the gold passages.

    ``shuffle`` permutes each example's passages (seeded) so detection does not learn the first
    stage's order. Returns the top ``top_k`` heads as a :class:`HeadSet` (or a
    :class:`DetectionResult` with all scores when ``return_details``).
    """
    from tqdm.auto import tqdm

    from . import parallel

    examples = list(examples)
    if not examples:
        raise ValueError("no detection examples")
    shape = scorer.shape
    rng = random.Random(seed)
    all_heads = HeadSet.all_heads(shape)
    # Every example's permutation is drawn here, in example order, by every process: under
    # torchrun / accelerate launch each process then scores its shard of the examples, and the
    # gathered result is identical to a single process's.
    orders = []
    for ex in examples:
        order = list(range(len(ex.passages)))
        if shuffle:
            rng.shuffle(order)
        orders.append(order)

    def one(e: int, ex: DetectionExample) -> np.ndarray:
        order = orders[e]
        passages = [ex.passages[i] for i in order]
        gold = [order.index(g) for g in sorted(ex.gold)]
        hs = scorer.head_scores(ex.query, passages, heads=all_heads, calibrate=calibrate)
        return gold_mass(hs.per_head(calibrate), gold).reshape(shape.num_layers, shape.num_heads)

    desc = "detecting heads" + (f" (rank 0 of {parallel.world_size()})" if parallel.is_distributed() else "")
    bar = lambda idx: tqdm(idx, desc=desc, disable=not show_progress or not parallel.is_main_process())  # noqa: E731
    per_example = np.zeros((len(examples), shape.num_layers, shape.num_heads))
    for e, mass in enumerate(parallel.map_sharded(one, examples, progress=bar)):
        per_example[e] = mass
    info = {
        "method": "qrscore-calibrated" if calibrate else "qrscore",
        "examples": len(examples),
        "data": data_description,
        "candidate_order": scorer.candidate_order,
        "shuffle": shuffle,
        "seed": seed,
        "prompt_template": TEMPLATE_VERSION,
        "config_fingerprint": config_fingerprint(scorer.model.config),
        "date": _dt.date.today().isoformat(),
    }
    result = select_top_heads(per_example, top_k, name=name, model=scorer.model_name, shape=shape, info=info)
    return result if return_details else result.head_set


def gold_mass(per_head: np.ndarray, gold: Sequence[int]) -> np.ndarray:
    """QRscore of every head on the gold passages: ``per_head`` is ``[heads, passages]``."""
    return per_head[:, list(gold)].sum(axis=1)


def select_top_heads(per_example: np.ndarray, top_k: int, *, name: str, model: str | None,
                     shape: ModelShape, info: dict[str, Any]) -> DetectionResult:
    """Rank heads by their mean over examples (``per_example`` is ``[examples, layers, heads]``)."""
    if not 1 <= top_k <= shape.num_layers * shape.num_heads:
        raise ValueError(f"top_k must be between 1 and {shape.num_layers * shape.num_heads}")
    mean = per_example.mean(axis=0)
    flat = mean.reshape(-1)
    best = sorted(range(flat.size), key=lambda i: (-flat[i], i))[:top_k]
    heads = tuple((i // shape.num_heads, i % shape.num_heads) for i in best)
    head_set = HeadSet(
        heads,
        name=name,
        model=model,
        shape=shape,
        scores=tuple(float(flat[i]) for i in best),
        head_scores=tuple(tuple(float(v) for v in row) for row in mean),
        info=info,
    )
    return DetectionResult(head_set, mean, per_example)


def examples_from_rankings(
    queries: dict[str, str],
    candidates: dict[str, Sequence[str]],
    qrels: dict[str, dict[str, int]],
    passages: dict[str, Any],
    limit: int | None = None,
    require_gold: bool = True,
) -> list[DetectionExample]:
    """Build examples from first-stage candidate lists (ids) and relevance judgements."""
    out = []
    for qid in sorted(candidates, key=_natural_key):
        if qid not in queries:
            continue
        ids = list(candidates[qid])
        rel = qrels.get(qid, {})
        gold = [i for i, d in enumerate(ids) if rel.get(d, 0) > 0]
        if not gold:
            if require_gold:
                continue
        out.append(DetectionExample(queries[qid], tuple(passages[d] for d in ids), frozenset(gold), qid))
        if limit is not None and len(out) >= limit:
            break
    return out


def _natural_key(s: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))
