"""Detect a model's query-focused retrieval heads from a handful of labelled examples.

Two criteria:

- ``"mass"`` (QRHead paper, eq. 3-4): for every head, the mean over examples of its QRscore on the gold
  passages, i.e. the attention mass from the query rows onto the gold passages' tokens, calibrated
  (minus the same mass for the null query "N/A") unless the scorer does not calibrate.
- ``"ndcg"`` (the authors' BEIR/NQ procedure): every head ranks the candidates on its own; a head's
  score is its mean nDCG@10 over the examples.

Every head of every layer is measured in one forward per example with the scorer's own options (row
set, token filter, template), so detection reads the heads the way scoring will; the variant is recorded
in the head set and the scorer warns when a set is used with other options. Optionally
(:func:`fit_head_weights`) non-negative weights over the selected heads are fitted on the same examples
with a pairwise logistic objective (gold above non-gold), instead of the uniform mean.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import QRHeadValueError
from .heads import HeadSet, ModelShape, config_fingerprint
from .scoring import QRHeadScorer

CRITERIA = ("mass", "ndcg")


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
            raise QRHeadValueError(f"example {self.qid or self.query!r} has no gold passage")
        bad = [g for g in self.gold if not 0 <= g < len(self.passages)]
        if bad:
            raise QRHeadValueError(f"example {self.qid or self.query!r}: gold ids {bad} out of range")


@dataclass
class DetectionResult:
    """Per-head scores of a detection run; ``head_set`` holds the selected top heads."""

    head_set: HeadSet
    head_scores: np.ndarray  # [layers, heads], mean over examples
    per_example: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # [examples, layers, heads]
    masses: list[np.ndarray] = field(repr=False, default_factory=list)  # per example [layers*heads, N]
    gold: list[list[int]] = field(repr=False, default_factory=list)


def detect_heads(
    scorer: QRHeadScorer,
    examples: Iterable[DetectionExample],
    top_k: int = 16,
    *,
    criterion: str = "mass",
    fit_weights: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    data_description: str = "",
    name: str = "qrhead",
    show_progress: bool = True,
    return_details: bool = False,
) -> HeadSet | DetectionResult:
    """Rank every head by ``criterion`` on the examples and keep the top ``top_k``.

    ``shuffle`` permutes each example's passages (seeded) so detection does not learn the first
    stage's order. ``fit_weights`` fits non-negative weights over the kept heads (:func:`fit_head_weights`).
    Returns a :class:`HeadSet` (or a :class:`DetectionResult` with all scores when ``return_details``).
    """
    from tqdm.auto import tqdm

    from . import parallel

    if criterion not in CRITERIA:
        raise QRHeadValueError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
    examples = list(examples)
    if not examples:
        raise QRHeadValueError("no detection examples")
    shape = scorer.shape
    if not 1 <= top_k <= shape.num_layers * shape.num_heads:
        raise QRHeadValueError(f"top_k must be between 1 and {shape.num_layers * shape.num_heads}")
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
    golds = [[orders[e].index(g) for g in sorted(ex.gold)] for e, ex in enumerate(examples)]

    def one(e: int, ex: DetectionExample) -> np.ndarray:
        passages = [ex.passages[i] for i in orders[e]]
        return scorer.head_masses(ex.query, passages, heads=all_heads).per_head(scorer.options.calibrate)

    desc = "detecting heads" + (f" (rank 0 of {parallel.world_size()})" if parallel.is_distributed() else "")
    bar = lambda idx: tqdm(idx, desc=desc, disable=not show_progress or not parallel.is_main_process())  # noqa: E731
    masses = list(parallel.map_sharded(one, examples, progress=bar))
    per_example = head_criterion(masses, golds, criterion).reshape(len(examples), shape.num_layers, shape.num_heads)
    info = {
        "method": f"{criterion} ({'calibrated' if scorer.options.calibrate else 'uncalibrated'})",
        "criterion": criterion,
        "examples": len(examples),
        "data": data_description,
        "candidate_order": scorer.effective_options.candidate_order,
        "shuffle": shuffle,
        "seed": seed,
        "variant": scorer.effective_options.variant,
        "prompt_template": scorer.prompt_template.version,
        "max_passage_tokens": scorer.options.max_passage_tokens,
        "config_fingerprint": config_fingerprint(scorer.model.config),
        "date": _dt.date.today().isoformat(),
    }
    result = select_top_heads(per_example, top_k, name=name, model=scorer.model_name, shape=shape, info=info)
    result.masses, result.gold = masses, golds
    if fit_weights:
        rows = [l * shape.num_heads + h for l, h in result.head_set.heads]
        weights = fit_head_weights([m[rows] for m in masses], golds)
        hs = result.head_set
        result.head_set = HeadSet(hs.heads, name=hs.name, model=hs.model, shape=hs.shape, scores=hs.scores,
                                  detection_scores=hs.detection_scores,
                                  info={**hs.info, "weights": "pairwise logistic, non-negative"},
                                  weights=tuple(float(w) for w in weights))
    return result if return_details else result.head_set


def head_criterion(masses: Sequence[np.ndarray], golds: Sequence[Sequence[int]], criterion: str = "mass") -> np.ndarray:
    """``[examples, heads]``: each head's detection score per example (``masses[e]`` is ``[heads, N]``)."""
    if criterion == "mass":
        return np.stack([m[:, list(g)].sum(axis=1) for m, g in zip(masses, golds)])
    return np.stack([per_head_ndcg(m, g) for m, g in zip(masses, golds)])


def gold_mass(per_head: np.ndarray, gold: Sequence[int]) -> np.ndarray:
    """QRscore of every head on the gold passages: ``per_head`` is ``[heads, passages]``."""
    return per_head[:, list(gold)].sum(axis=1)


def per_head_ndcg(per_head: np.ndarray, gold: Sequence[int], k: int = 10) -> np.ndarray:
    """nDCG@k of the ranking each head makes on its own (``per_head`` is ``[heads, passages]``), via ir-measures."""
    try:
        import ir_measures
    except ImportError as exc:  # pragma: no cover - eval extra
        raise QRHeadValueError("criterion='ndcg' needs ir-measures: pip install 'qrhead-integrations[eval]'") from exc
    n = per_head.shape[1]
    qrels = {str(h): {str(g): 1 for g in gold} for h in range(per_head.shape[0])}
    # Ties broken by position (tiny decreasing offset), as everywhere else in the evaluation.
    eps = 1e-12 * np.arange(n)
    run = {str(h): {str(j): float(per_head[h, j]) - eps[j] for j in range(n)} for h in range(per_head.shape[0])}
    out = np.zeros(per_head.shape[0])
    for m in ir_measures.iter_calc([ir_measures.parse_measure(f"nDCG@{k}")], qrels, run):
        out[int(m.query_id)] = m.value
    return out


def select_top_heads(per_example: np.ndarray, top_k: int, *, name: str, model: str | None,
                     shape: ModelShape, info: dict[str, Any]) -> DetectionResult:
    """Rank heads by their mean over examples (``per_example`` is ``[examples, layers, heads]``)."""
    if not 1 <= top_k <= shape.num_layers * shape.num_heads:
        raise QRHeadValueError(f"top_k must be between 1 and {shape.num_layers * shape.num_heads}")
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
        detection_scores=tuple(tuple(float(v) for v in row) for row in mean),
        info=info,
    )
    return DetectionResult(head_set, mean, per_example)


def fit_head_weights(features: Sequence[np.ndarray], golds: Sequence[Sequence[int]], *, l2: float = 1.0,
                     steps: int = 200) -> np.ndarray:
    """Non-negative weights ``w`` (mean 1) so that ``w @ features[e]`` ranks each example's gold passages
    above its other passages: the pairwise logistic loss over (gold, non-gold) pairs, averaged per
    example, plus ``l2`` times the mean squared distance of ``w`` from uniform weights. Features are
    standardised per head first, so the penalty treats heads alike; the returned weights apply to the
    raw masses. Deterministic (L-BFGS from uniform weights)."""
    import torch

    k = features[0].shape[0]
    spread = np.concatenate([f for f in features], axis=1).std(axis=1)
    spread = np.where(spread > 0, spread, 1.0)
    pairs = []
    for f, g in zip(features, golds):
        g = list(g)
        others = [j for j in range(f.shape[1]) if j not in set(g)]
        if not g or not others:
            continue
        x = f / spread[:, None]
        pairs.append(torch.tensor(x[:, g][:, :, None] - x[:, others][:, None, :], dtype=torch.float64))  # [k, G, O]
    if not pairs:
        return np.ones(k)
    raw = torch.zeros(k, dtype=torch.float64, requires_grad=True)  # w = softplus(raw) / softplus(0)
    base = float(np.log(2.0))
    opt = torch.optim.LBFGS([raw], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        opt.zero_grad()
        w = torch.nn.functional.softplus(raw) / base
        loss = torch.stack([torch.nn.functional.softplus(-(torch.einsum("k,kgo->go", w, d))).mean() for d in pairs]).mean()
        loss = loss + l2 * ((w - 1) ** 2).mean()
        loss.backward()
        return loss

    opt.step(loss_fn)
    w = (torch.nn.functional.softplus(raw) / base).detach().numpy() / spread
    return w / w.mean()


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
