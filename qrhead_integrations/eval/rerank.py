"""Re-ranking experiments on BEIR-layout data: every baseline from one cached pass per condition.

Conditions: the candidate list handed to the model is in first-stage order or shuffled (seeded per
query); the prompt places the list's first item next to the query (``reversed``, the reference setup)
or first (``as_given``). Methods evaluated from the cached all-head masses:

- ``bm25`` (or the run's first stage), ``dense`` (all-MiniLM-L6-v2 over the same candidates),
- ``qrhead`` (the head set under test), ``all-heads`` (ICR), ``random`` (mean over seeds),
  ``retrieval-heads`` (copy-paste heads, Wu et al.), ``qrhead-uncalibrated``,
- fusion with the first stage (``qrhead+rrf``, ``qrhead+linear``),
- position-bias remedies: ``qrhead-both`` (mean over both placements) and ``qrhead-poscorr``
  (a per-distance correction estimated on the detection examples).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.aggregate import HeadMasses
from ..engine.detection import config_fingerprint, gold_mass, select_top_heads
from ..engine.fusion import fuse
from ..engine.heads import HeadSet, resolve_heads
from ..engine.prompt import TEMPLATE_VERSION
from ..engine.scoring import QRHeadScorer
from .data import BeirDataset
from .examples import beir_candidates, bm25_rescore
from .masses import Candidates, collect_masses, prompt_distance
from .metrics import paired_bootstrap, per_query, run_from_scores


@dataclass
class RerankData:
    """Queries with first-stage candidates and judgements."""

    name: str
    qrels: dict[str, dict[str, int]]
    items: list[Candidates]
    description: str


def load_rerank_data(root: str | Path, split: str, depth: int, n_queries: int | None = None,
                     seed: int = 0, run: str | None = None, skip: int = 0, bm25_scores: bool = False
                     ) -> RerankData:
    """Judged queries of ``split`` (all, or a seeded subset) with their top-``depth`` candidates.

    ``bm25_scores``: keep the run's candidates and order but score them with BM25 (see :func:`bm25_rescore`).
    """
    import random

    ds = BeirDataset.load(root)
    qrels = ds.split(split)
    qids = sorted((q for q in qrels if q in ds.queries and any(v > 0 for v in qrels[q].values())),
                  key=lambda q: (len(q), q))
    subset = "all"
    if n_queries is not None and n_queries < len(qids) or skip:
        rng = random.Random(seed)
        shuffled = qids[:]
        rng.shuffle(shuffled)
        qids = sorted(shuffled[skip: skip + (n_queries or len(qids))], key=lambda q: (len(q), q))
        subset = f"seeded subset (seed {seed}, skip {skip})"
    cands = beir_candidates(ds, qids, depth, run)
    if bm25_scores:
        cands = bm25_rescore(ds, cands)
    items = [Candidates(q, ds.queries[q], [d for d, _ in cands[q]], [ds.corpus[d] for d, _ in cands[q]],
                        [s for _, s in cands[q]]) for q in qids if q in cands]
    first = f"run {run}" if run else f"BM25 (bm25s) top-{depth}"
    if run and bm25_scores:
        first += " in its own order, BM25 (bm25s, whole corpus) scores for the bm25 baseline and fusion"
    desc = f"{ds.name} {split}: {len(items)} queries ({subset}), {first}"
    return RerankData(ds.name, {q: qrels[q] for q in qids}, items, desc)


@dataclass
class Detection:
    """Head sets detected from cached masses of labelled examples, and a position prior."""

    head_set: HeadSet
    per_example: np.ndarray
    prior: np.ndarray  # mean calibrated qrhead score of non-gold candidates by distance from the query


def detect_from_masses(scorer: QRHeadScorer, data: RerankData, masses: dict[str, HeadMasses], *, order: str,
                       placement: str, seed: int, top_k: int = 16, name: str = "qrhead",
                       description: str = "") -> Detection:
    """Top heads by mean calibrated mass on gold candidates (the engine's detection objective)."""
    shape = scorer.shape
    rows, kept = [], []
    for item in data.items:
        rel = data.qrels.get(item.qid, {})
        gold = [i for i, d in enumerate(item.doc_ids) if rel.get(d, 0) > 0]
        if not gold or item.qid not in masses:
            continue
        rows.append(gold_mass(masses[item.qid].per_head(True), gold).reshape(shape.num_layers, shape.num_heads))
        kept.append(item)
    info = {"method": "qrscore-calibrated", "examples": len(rows),
            "data": f"{description}; {len(rows)} with a gold passage among the candidates",
            "order": order, "placement": placement, "seed": seed,
            "max_passage_tokens": scorer.options.max_passage_tokens, "prompt_template": TEMPLATE_VERSION,
            "config_fingerprint": config_fingerprint(scorer.model.config)}
    result = select_top_heads(np.stack(rows), top_k, name=name, model=scorer.model_name, shape=shape, info=info)
    prior = position_prior(result.head_set, kept, data.qrels, masses, shape.num_heads, order, placement, seed)
    return Detection(result.head_set, result.per_example, prior)


def position_prior(head_set: HeadSet, items: Sequence[Candidates], qrels: dict[str, dict[str, int]],
                   masses: dict[str, HeadMasses], num_heads: int, order: str, placement: str, seed: int,
                   length: int = 64) -> np.ndarray:
    """Mean score of non-relevant candidates at each distance from the query (NaN-free, padded)."""
    sums, counts = np.zeros(length), np.zeros(length)
    for item in items:
        m = masses[item.qid]
        score = m.scores(head_set.heads)
        dist = prompt_distance(item.qid, len(item.doc_ids), order, placement, seed)
        rel = qrels.get(item.qid, {})
        for j, d in enumerate(item.doc_ids):
            if rel.get(d, 0) <= 0 and dist[j] < length:
                sums[dist[j]] += score[j]
                counts[dist[j]] += 1
    prior = np.divide(sums, np.maximum(counts, 1))
    last = int(np.max(np.nonzero(counts)[0])) if counts.any() else 0
    prior[last + 1:] = prior[last]
    return prior


@dataclass
class RerankResult:
    data: str
    model: str
    measures: list[str]
    per_query: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    # condition -> method -> measure -> qid -> value
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def mean(self, condition: str, method: str, measure: str) -> float:
        vals = self.per_query[condition][method][measure]
        return float(np.mean(list(vals.values())))

    def to_json(self) -> dict[str, Any]:
        return {"data": self.data, "model": self.model, "measures": self.measures,
                "per_query": self.per_query, "seconds": self.seconds, "notes": self.notes}


def method_scores(
    data: RerankData,
    masses: dict[str, HeadMasses],
    num_heads: int,
    head_sets: dict[str, HeadSet],
    random_sets: Sequence[HeadSet] = (),
    other_placement: dict[str, HeadMasses] | None = None,
    prior: np.ndarray | None = None,
    distances: dict[str, np.ndarray] | None = None,
    qrhead_key: str = "qrhead",
) -> dict[str, dict[str, list[float]]]:
    """Scores of every method, per query (first-stage order of candidates)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, hs in head_sets.items():
        out[name] = {it.qid: masses[it.qid].scores(hs.heads).tolist() for it in data.items}
    qr = head_sets.get(qrhead_key)
    if qr is not None:
        out["qrhead-uncalibrated"] = {it.qid: masses[it.qid].scores(qr.heads, calibrate=False).tolist()
                                      for it in data.items}
        out["qrhead+rrf"] = {it.qid: fuse(out[qrhead_key][it.qid], it.first_stage, "rrf") for it in data.items}
        out["qrhead+linear"] = {it.qid: fuse(out[qrhead_key][it.qid], it.first_stage, "linear")
                                for it in data.items}
        if other_placement is not None:
            out["qrhead-both"] = {
                it.qid: ((masses[it.qid].scores(qr.heads) + other_placement[it.qid].scores(qr.heads)) / 2
                         ).tolist() for it in data.items}
        if prior is not None and distances is not None:
            out["qrhead-poscorr"] = {
                it.qid: (np.asarray(out[qrhead_key][it.qid]) - prior[np.minimum(distances[it.qid], len(prior) - 1)]
                         ).tolist() for it in data.items}
    for i, hs in enumerate(random_sets):
        out[f"random#{i}"] = {it.qid: masses[it.qid].scores(hs.heads).tolist() for it in data.items}
    return out


def evaluate_methods(data: RerankData, scores: dict[str, dict[str, list[float]]], measures: Sequence[str]
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """method -> measure -> qid -> value; ``random#i`` runs are averaged into ``random``."""
    doc_ids = {it.qid: it.doc_ids for it in data.items}
    out = {name: per_query(data.qrels, run_from_scores(doc_ids, s), measures) for name, s in scores.items()}
    rnd = [k for k in out if k.startswith("random#")]
    if rnd:
        out["random"] = {m: {q: float(np.mean([out[k][m][q] for k in rnd])) for q in out[rnd[0]][m]}
                         for m in measures}
        for k in rnd:
            del out[k]
    return out


def format_table(result: RerankResult, conditions: Sequence[str], methods: Sequence[str],
                 measure: str, baselines: Sequence[str] = ("bm25", "all-heads")) -> str:
    """Markdown table: mean per condition, with paired-bootstrap 95% CIs of the difference to baselines."""
    head = ["method"]
    for c in conditions:
        head.append(f"{measure} ({c})")
        for b in baselines:
            head.append(f"vs {b} ({c})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = [m]
        for c in conditions:
            pq = result.per_query.get(c, {})
            if m not in pq:
                cells += ["–"] * (1 + len(baselines))
                continue
            cells.append(f"{np.mean(list(pq[m][measure].values())):.3f}")
            for b in baselines:
                if b == m or b not in pq:
                    cells.append("")
                else:
                    d = paired_bootstrap(pq[m][measure], pq[b][measure])
                    cells.append(f"{d}{' *' if d.significant else ''}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_rerank_experiment(
    scorer: QRHeadScorer,
    data: RerankData,
    *,
    head_sets: dict[str, Any],
    detection: Detection | None = None,
    orders: Sequence[str] = ("first_stage", "shuffled"),
    remedies: bool = True,
    random_seeds: int = 5,
    dense: bool = True,
    measures: Sequence[str] = ("nDCG@10",),
    seed: int = 0,
    cache_root: str | Path | None = None,
    show_progress: bool = True,
) -> RerankResult:
    """Score every condition once (cached) and evaluate every method on it."""
    shape = scorer.shape
    resolved = {k: resolve_heads(v, shape, scorer.model_name) for k, v in head_sets.items()}
    k = len(resolved.get("qrhead", next(iter(resolved.values()))))
    randoms = [HeadSet.random_heads(shape, k, seed=s) for s in range(random_seeds)]
    result = RerankResult(data.description, scorer.model_name, list(measures))
    first = {it.qid: it.first_stage for it in data.items}
    baseline_scores: dict[str, dict[str, list[float]]] = {"bm25": first}
    if dense:
        from .first_stage import DenseRetriever, doc_text

        t = time.time()
        enc = DenseRetriever()
        baseline_scores["dense"] = {it.qid: enc.score_texts(it.query, [doc_text(p) if isinstance(p, dict) else str(p)
                                                                       for p in it.passages]) for it in data.items}
        result.seconds["dense"] = time.time() - t
    # Cache entries are per query (keyed by qid and candidate ids), so subsets share them.
    setting = {"data": data.name, "depth": len(data.items[0].doc_ids) if data.items else 0}
    for order in orders:
        t = time.time()
        main = collect_masses(scorer, data.items, order, "reversed", seed, cache_root, setting, show_progress,
                              desc=f"{data.name} {order}")
        result.seconds[f"{order}/reversed"] = time.time() - t
        other = None
        if remedies:
            t = time.time()
            other = collect_masses(scorer, data.items, order, "as_given", seed, cache_root, setting, show_progress,
                                   desc=f"{data.name} {order} (as_given)")
            result.seconds[f"{order}/as_given"] = time.time() - t
        distances = {it.qid: prompt_distance(it.qid, len(it.doc_ids), order, "reversed", seed) for it in data.items}
        scores = dict(baseline_scores)
        scores.update(method_scores(data, main, shape.num_heads, resolved, randoms, other,
                                    detection.prior if detection is not None else None, distances))
        result.per_query[order] = evaluate_methods(data, scores, measures)
    result.notes = {
        "head_sets": {k: {"heads": str(v), "name": v.name, "info": dict(v.info)} for k, v in resolved.items()},
        "random_seeds": random_seeds, "k": k, "order_seed": seed,
        "max_passage_tokens": scorer.options.max_passage_tokens, "dtype": str(scorer.model.dtype),
    }
    return result


def save_result(result: RerankResult, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result.to_json(), indent=1))


def load_result(path: str | Path) -> RerankResult:
    d = json.loads(Path(path).read_text())
    return RerankResult(d["data"], d["model"], d["measures"], d["per_query"], d.get("seconds", {}), d.get("notes", {}))
