"""IR metrics through ``ir-measures`` (no hand-written nDCG) and paired bootstrap intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Run = dict[str, dict[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def parse_measures(names: Sequence[str]) -> list:
    import ir_measures

    return [ir_measures.parse_measure(n) for n in names]


def per_query(qrels: Qrels, run: Run, measures: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{measure: {qid: value}}`` for every query of ``run`` that has judgements.

    Queries of the run with no relevant document score 0 (``ir-measures`` would drop them).
    """
    import ir_measures

    parsed = parse_measures(measures)
    qrels = {q: dict(d) for q, d in qrels.items() if q in run}
    out: dict[str, dict[str, float]] = {str(m): {q: 0.0 for q in run if q in qrels} for m in parsed}
    for metric in ir_measures.iter_calc(parsed, qrels, run):
        out[str(metric.measure)][metric.query_id] = float(metric.value)
    return out


def mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")


@dataclass(frozen=True)
class Difference:
    """Mean paired difference ``a - b`` with a bootstrap 95% interval."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], samples: int = 10000,
                     seed: int = 0, level: float = 0.95) -> Difference:
    """Percentile bootstrap over queries of the mean of ``a[q] - b[q]`` (seeded, deterministic)."""
    qids = sorted(set(a) & set(b))
    if not qids:
        raise ValueError("no common queries")
    d = np.array([a[q] - b[q] for q in qids])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(samples, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Difference(float(d.mean()), float(lo), float(hi), len(d))


def run_from_scores(doc_ids: Mapping[str, Sequence[str]], scores: Mapping[str, Sequence[float]]) -> Run:
    """A run dict; ties are broken by first-stage position so the order is deterministic."""
    run: Run = {}
    for qid, ids in doc_ids.items():
        s = np.asarray(scores[qid], dtype=np.float64)
        n = len(ids)
        # rank-preserving tie-break: subtract a tiny amount growing with first-stage position
        span = float(np.ptp(s)) if n > 1 else 1.0
        eps = (span if span > 0 else 1.0) * 1e-9
        run[qid] = {d: float(v) - eps * i for i, (d, v) in enumerate(zip(ids, s))}
    return run
