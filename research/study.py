"""The ranking-quality study: every scoring variant evaluated offline from stored per-token masses.

:mod:`research.collect` stores, per query, every head's masses for both row sets (real and null query) and the
calibrated per-token masses. Here, without running the model again:

- heads are *detected* on the detection sets only (SciFact train, NQ-open questions disjoint from the
  NQ evaluation questions, or both), by attention mass on the gold passages or by each head's nDCG@10,
  for 8 / 16 / 32 heads, with uniform or fitted (pairwise logistic, non-negative) head weights;
- each variant scores the evaluation sets in both candidate orders: row set (query / suffix) x token
  filter (off / 2 sigma), calibration, head sets, weights, and fusion with the first stage (linear with a
  weight fitted on the detection sets, or reciprocal rank);
- baselines: BM25 (the first stage), a dense retriever, all heads (ICR), random heads (mean of 5 seeds),
  copy-paste retrieval heads, the previously shipped head set;
- every figure is a mean over queries with a paired bootstrap 95% interval of its difference to BM25
  and to all heads (``ir-measures`` for the metrics).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qrhead_integrations.engine import aggregate
from qrhead_integrations.engine.detection import fit_head_weights, head_criterion
from qrhead_integrations.engine.fusion import fuse
from qrhead_integrations.engine.heads import HeadSet, ModelShape, resolve_heads
from qrhead_integrations.engine.scoring import QRHeadScorer
from qrhead_integrations.eval.masses import Candidates, shuffle_permutation
from qrhead_integrations.eval.metrics import paired_bootstrap, per_query, run_from_scores
from qrhead_integrations.eval.rerank import RerankData

from .collect import GROUPS, MassStore, StoredMasses

ORDERS = ("first_stage", "shuffled")


@dataclass(frozen=True)
class Variant:
    """How a head set's stored masses become passage scores."""

    rows: str = "query"  # "query" or "suffix"
    token_filter: bool = False
    calibrate: bool = True

    @property
    def label(self) -> str:
        parts = [f"{self.rows} rows"]
        if self.token_filter:
            parts.append("2-sigma filter")
        if not self.calibrate:
            parts.append("uncalibrated")
        return ", ".join(parts)


def token_spans(owner: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``[a, b)`` token span of each of the ``n`` passages in stored tokens grouped by passage
    (``owner``: each token's passage, ascending)."""
    bounds = np.searchsorted(owner, np.arange(n + 1))
    return [(int(bounds[j]), int(bounds[j + 1])) for j in range(n)]


def head_masses(m: StoredMasses, variant: Variant, rows: np.ndarray | None = None) -> np.ndarray:
    """``[heads, N]`` per-head masses of one query (``rows``: head indices, layer-major; None = all)."""
    g = GROUPS.index(variant.rows)
    n = m.sums.shape[-1]
    if variant.token_filter:  # the stored tokens are calibrated already: the engine's filter, head by head
        tokens = m.tokens[g] if rows is None else m.tokens[g][rows]
        return aggregate.per_head_filtered(tokens.astype(np.float64), None, token_spans(m.token_passage, n))
    real = m.sums[g, 0].astype(np.float64)
    mass = real - m.sums[g, 1] if variant.calibrate else real
    return mass if rows is None else mass[rows]


def passage_scores(m: StoredMasses, variant: Variant, rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Scores of one query's passages: the (weighted) mean over ``rows`` heads; with the token filter the
    heads are combined per token first, then filtered: the engine's :func:`aggregate.passage_scores` on the
    stored (calibrated) per-token masses. Without it, the same weighted mean of the stored per-passage sums."""
    w = np.full(len(rows), 1.0 / len(rows)) if weights is None else np.asarray(weights) / np.sum(weights)
    g = GROUPS.index(variant.rows)
    n = m.sums.shape[-1]
    if variant.token_filter:
        return aggregate.passage_scores(m.tokens[g][rows].astype(np.float64), None, token_spans(m.token_passage, n),
                                        w, "2sigma")
    return w @ head_masses(m, variant, rows)


def head_rows(heads: Sequence[tuple[int, int]], num_heads: int) -> np.ndarray:
    return np.array([l * num_heads + h for l, h in heads], dtype=np.int64)


@dataclass
class EvalSet:
    """An evaluation set: its data, stored masses per order, measures and a label."""

    key: str
    label: str
    data: RerankData
    masses: dict[str, dict[str, StoredMasses]]  # order -> qid -> masses
    measures: tuple[str, ...]


@dataclass
class DetectSet:
    data: RerankData
    masses: dict[str, StoredMasses]

    def golds(self) -> tuple[list[str], list[list[int]]]:
        qids, golds = [], []
        for it in self.data.items:
            rel = self.data.qrels.get(it.qid, {})
            g = [i for i, d in enumerate(it.doc_ids) if rel.get(d, 0) > 0]
            if g and it.qid in self.masses:
                qids.append(it.qid)
                golds.append(g)
        return qids, golds


@dataclass
class DetectedHeads:
    name: str
    heads: HeadSet
    weights: np.ndarray | None = None
    fusion_weight: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def detect(shape: ModelShape, sets: Sequence[DetectSet], variant: Variant, *, k: int, criterion: str = "mass",
           fit: bool = False, name: str = "qrhead") -> DetectedHeads:
    """Top-``k`` heads by ``criterion`` over the detection sets (each set weighs by its number of examples)."""
    masses, golds = [], []
    for s in sets:
        qids, g = s.golds()
        masses.extend(head_masses(s.masses[q], variant) for q in qids)
        golds.extend(g)
    per = head_criterion(masses, golds, criterion)  # [examples, heads]
    mean = per.mean(axis=0)
    best = sorted(range(mean.size), key=lambda i: (-mean[i], i))[:k]
    heads = HeadSet(tuple((i // shape.num_heads, i % shape.num_heads) for i in best), name=name, shape=shape)
    weights = None
    if fit:
        rows = np.array(best)
        weights = fit_head_weights([m[rows] for m in masses], golds)
    # the variant as the engine's options name it (ScoringOptions.variant): a scorer with other options warns
    options = {"query_rows": variant.rows, "token_filter": "2sigma" if variant.token_filter else None,
               "calibrate": variant.calibrate, "template": "qrhead"}
    return DetectedHeads(name, heads, weights, info={"examples": len(masses), "criterion": criterion,
                                                      "variant": options, "variant_label": variant.label, "k": k,
                                                      "fitted": fit})


def fit_fusion_weight(sets: Sequence[DetectSet], score: Callable[[StoredMasses], np.ndarray], method: str = "linear",
                      grid: Sequence[float] = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2))) -> float:
    """The QRHead share of a fused score that maximises mean nDCG@10 on the detection sets."""
    best, best_w = -1.0, 0.5
    for w in grid:
        vals = []
        for s in sets:
            scores = {it.qid: fuse(score(s.masses[it.qid]), it.first_stage, method, float(w))
                      for it in s.data.items if it.qid in s.masses}
            doc_ids = {it.qid: it.doc_ids for it in s.data.items if it.qid in scores}
            pq = per_query(s.data.qrels, run_from_scores(doc_ids, scores), ["nDCG@10"])["nDCG@10"]
            vals.extend(pq.values())
        if np.mean(vals) > best + 1e-12:
            best, best_w = float(np.mean(vals)), float(w)
    return best_w


Method = Callable[[Candidates, StoredMasses, str], np.ndarray]  # (item, masses, candidate order) -> scores


def evaluate(es: EvalSet, methods: dict[str, Method]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """order -> method -> measure -> qid -> value."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    doc_ids = {it.qid: it.doc_ids for it in es.data.items}
    for order, masses in es.masses.items():
        out[order] = {}
        for name, fn in methods.items():
            scores = {it.qid: fn(it, masses[it.qid], order) for it in es.data.items if it.qid in masses}
            ids = {q: doc_ids[q] for q in scores}
            out[order][name] = per_query(es.data.qrels, run_from_scores(ids, scores), es.measures)
    return out


def average_random(table: dict[str, dict[str, dict[str, float]]], prefix: str = "random#") -> None:
    keys = [k for k in table if k.startswith(prefix)]
    if not keys:
        return
    measures = table[keys[0]]
    table["random heads"] = {m: {q: float(np.mean([table[k][m][q] for k in keys])) for q in measures[m]}
                             for m in measures}
    for k in keys:
        del table[k]


def table(results: dict[str, dict[str, dict[str, dict[str, float]]]], methods: Sequence[str], measure: str,
          baselines: Sequence[str] = ("BM25", "all heads (ICR)")) -> str:
    """Markdown: per order the mean and the paired-bootstrap differences to the baselines."""
    orders = [o for o in ORDERS if o in results] or list(results)
    head = ["method"]
    for o in orders:
        head.append(f"{measure} ({o.replace('_', '-')})")
        head += [f"vs {b}" for b in baselines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = [m]
        for o in orders:
            res = results[o]
            if m not in res:
                cells += ["–"] * (1 + len(baselines))
                continue
            cells.append(f"{np.mean(list(res[m][measure].values())):.3f}")
            for b in baselines:
                if b == m or b not in res:
                    cells.append("")
                    continue
                d = paired_bootstrap(res[m][measure], res[b][measure])
                cells.append(f"{d}{' *' if d.significant else ''}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- loading the stored masses -----------------------------------------------------------------------


def load_eval_masses(scorer: QRHeadScorer, cache: Path, data: RerankData, orders: Sequence[str], seed: int = 0
                     ) -> dict[str, dict[str, StoredMasses]]:
    out: dict[str, dict[str, StoredMasses]] = {}
    depth = len(data.items[0].doc_ids)
    for order in orders:
        store = MassStore(cache, scorer, {"set": data.name, "depth": depth, "order": order, "seed": seed})
        got = {}
        for it in data.items:
            m = store.get(it.qid, it.doc_ids)
            if m is not None:
                got[it.qid] = m
        if got:
            out[order] = got
    return out


def restrict(data: RerankData, qids: set[str]) -> RerankData:
    items = [it for it in data.items if it.qid in qids]
    return RerankData(data.name, {q: data.qrels[q] for q in qids if q in data.qrels}, items, data.description)


def first_stage_heads(scorer: QRHeadScorer, spec: str) -> HeadSet | None:
    try:
        return resolve_heads(spec, scorer.shape, scorer.model_name)
    except Exception:
        return None


def save(path: str | Path, report: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1, default=float))


# --- the study ---------------------------------------------------------------------------------------

MEASURES = {"scifact-test": ("nDCG@10",), "nq": ("R@1", "R@5", "nDCG@10"), "hotpotqa": ("R@2", "R@5"),
            "squad": ("R@1", "R@3", "R@5")}
LABELS = {"scifact-test": "SciFact test (BM25 top-20)", "nq": "NQ-open multi-document (gold + 19 distractors)",
          "hotpotqa": "HotpotQA-100 (10 paragraphs, 2 gold)", "squad": "SQuAD article chunks (256 tokens)"}


def load_sets(scorer: QRHeadScorer, root: Path, cache: Path, plan: dict[str, Any]) -> tuple[dict[str, DetectSet], dict[str, EvalSet]]:
    """The detection and evaluation sets of ``plan`` with whatever masses the store holds."""
    from .sets import load_set

    detect_sets = {}
    for key, (name, n, skip) in plan["detect"].items():
        data = load_set(name, root, n=n, skip=skip)
        masses = load_eval_masses(scorer, cache, data, ["shuffled"]).get("shuffled", {})
        detect_sets[key] = DetectSet(data, masses)
    eval_sets = {}
    for key, parts in plan["eval"].items():
        if key == "squad":
            es = squad_set(scorer.with_options(max_passage_tokens=parts["max_passage_tokens"]), root, cache, parts)
            if es is not None:
                eval_sets[key] = es
            continue
        datas = [load_set(key, root, n=n, skip=skip) for n, skip in parts]
        items = [it for d in datas for it in d.items]
        qrels = {q: v for d in datas for q, v in d.qrels.items()}
        data = RerankData(datas[0].name, qrels, items, "; ".join(d.description for d in datas))
        masses = {o: m for o, m in load_eval_masses(scorer, cache, data, ORDERS).items() if m}
        stored = set.union(*(set(m) for m in masses.values())) if masses else set()
        if not stored:
            continue
        # each order is evaluated on the queries stored for it (e.g. a second SciFact 60 in first-stage
        # order only); paired comparisons are within one order, so they stay paired
        data = restrict(data, stored)
        data = RerankData(data.name, data.qrels, data.items, data.description + " (queries stored: " + ", ".join(
            f"{o.replace('_', '-')} {len(m)}" for o, m in masses.items()) + ")")
        eval_sets[key] = EvalSet(key, LABELS[key], data, masses, MEASURES[key])
    return detect_sets, eval_sets


def squad_set(scorer: QRHeadScorer, root: Path, cache: Path, parts: dict[str, Any]) -> EvalSet | None:
    from qrhead_integrations.eval.chunks import squad_chunk_items
    from qrhead_integrations.eval.first_stage import BM25

    articles = squad_chunk_items(scorer, root / "squad-articles", chunk_tokens=parts["chunk_tokens"],
                                 n_questions=parts["questions"])
    store = MassStore(cache, scorer, {"set": "squad", "chunk_tokens": parts["chunk_tokens"], "order": "document"})
    items, qrels, masses = [], {}, {}
    for art in articles:
        bm25 = BM25.over(art["chunks"])
        for q in art["questions"]:
            m = store.get(q["id"], art["ids"])
            if m is None:
                continue
            items.append(Candidates(q["id"], q["question"], list(art["ids"]), list(art["chunks"]),
                                    bm25.scores(q["question"])))
            qrels[q["id"]] = {art["ids"][g]: 1 for g in q["gold"]}
            masses[q["id"]] = m
    if not items:
        return None
    data = RerankData("squad", qrels, items, f"SQuAD articles: {len(items)} questions, chunks of "
                                                f"{parts['chunk_tokens']} tokens in document order")
    return EvalSet("squad", LABELS["squad"], data, {"document": masses}, MEASURES["squad"])


def dense_scores(es: EvalSet, cache: Path) -> dict[str, list[float]]:
    """all-MiniLM-L6-v2 scores of every candidate (cached in a JSON file beside the masses)."""
    from qrhead_integrations.eval.first_stage import DenseRetriever, doc_text

    path = cache / "dense" / f"{es.key}-{len(es.data.items)}.json"
    if path.is_file():
        got = json.loads(path.read_text())
        if set(got) >= {it.qid for it in es.data.items}:
            return got
    enc = DenseRetriever()
    out = {it.qid: enc.score_texts(it.query, [doc_text(p) if isinstance(p, dict) else str(p) for p in it.passages])
           for it in es.data.items}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _input_order(it: Candidates, order: str, seed: int = 0) -> np.ndarray:
    """First-stage indices in the order the candidates were handed to the scorer."""
    n = len(it.doc_ids)
    if order == "shuffled":
        return np.asarray(shuffle_permutation(it.qid, n, seed))
    return np.arange(n)


def _inverse(it: Candidates, order: str) -> np.ndarray:
    return np.argsort(_input_order(it, order))


def _scorer_fn(rows: np.ndarray, variant: Variant, weights: np.ndarray | None = None) -> Callable[[StoredMasses], np.ndarray]:
    return lambda m: passage_scores(m, variant, rows, weights)


def head_set_fn(hs: HeadSet, num_heads: int) -> Callable[[StoredMasses], np.ndarray]:
    """Scores of a fixed head set (with its weights, if it has them), default variant."""
    weights = None if hs.weights is None else np.asarray(hs.weights)
    return _scorer_fn(head_rows(hs.heads, num_heads), Variant(), weights)


def run_study(scorer: QRHeadScorer, root: Path, cache: Path, plan: dict[str, Any], *, random_seeds: int = 5,
              min_detect: int = 32, heads_dir: Path | None = None, compare_heads: dict[str, str] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Detect every head set of the study on the detection sets and evaluate every method on every set.

    ``compare_heads``: more fixed head sets to evaluate as baselines, ``{label: head-set JSON path}``.
    """
    shape = scorer.shape
    H = shape.num_heads
    compared = {}
    for label, path in (compare_heads or {}).items():  # read first: a bad path fails before any work
        hs = first_stage_heads(scorer, Path(path))
        if hs is None:
            raise FileNotFoundError(f"compare head set {label!r}: cannot read {path} as a head set for {scorer.model_name}")
        compared[label] = hs
    detect_sets, eval_sets = load_sets(scorer, root, cache, plan)
    for k, s in detect_sets.items():
        log(f"detection set {k}: {len(s.golds()[0])} examples with a gold passage ({s.data.description})")
    for k, s in eval_sets.items():
        log(f"evaluation set {k}: {len(s.data.items)} queries, orders {sorted(s.masses)}")
    names = {"scifact": "SciFact train", "nq": "NQ held-out"}
    present = [k for k in ("scifact", "nq") if k in detect_sets and len(detect_sets[k].golds()[0]) >= min_detect]
    for k in detect_sets:
        if k not in present:
            log(f"detection set {k} left out: fewer than {min_detect} examples stored")
    if not present:
        raise ValueError("no detection examples are stored yet (run the collection first)")
    by_data = {names[k]: [detect_sets[k]] for k in present}
    if len(present) == 2:
        by_data["both"] = [detect_sets[k] for k in present]
    base = {"data": "both" if "both" in by_data else names[present[0]], "k": 16, "criterion": "mass",
            "variant": Variant(), "fit": False}

    detected: dict[str, DetectedHeads] = {}

    def heads_for(**change: Any) -> DetectedHeads:
        cfg = {**base, **change}
        key = json.dumps({k: (v.label if isinstance(v, Variant) else v) for k, v in cfg.items()}, sort_keys=True)
        if key not in detected:
            detected[key] = detect(shape, by_data[cfg["data"]], cfg["variant"], k=cfg["k"], criterion=cfg["criterion"],
                                   fit=cfg["fit"], name=key)
        return detected[key]

    methods: dict[str, tuple[Callable[[StoredMasses], np.ndarray], str | None]] = {}  # name -> (scores, fusion)
    all_rows = np.arange(shape.num_layers * H)
    methods["all heads (ICR)"] = (_scorer_fn(all_rows, Variant()), None)
    for s in range(random_seeds):
        rnd = HeadSet.random_heads(shape, 16, seed=s)
        methods[f"random#{s}"] = (_scorer_fn(head_rows(rnd.heads, H), Variant()), None)
    # fixed head sets: the registered ones (with their weights, alone) and any given as files, e.g. the set
    # shipped before a study, so that a rerun keeps comparing against it
    registered = first_stage_heads(scorer, "qrhead")
    fixed = [("retrieval heads (copy-paste)", first_stage_heads(scorer, "retrieval")),
             ("registered QRHead set (alone)", registered)] + list(compared.items())
    for label, hs in fixed:
        if hs is not None:
            methods[label] = (head_set_fn(hs, H), None)
    # one factor at a time around the base configuration
    groups: dict[str, list[str]] = {"baselines": ["BM25", "dense (MiniLM)", "all heads (ICR)", "random heads"]
                                    + [label for label, _ in fixed if label in methods]}

    def add(group: str, name: str, fn: Callable[[StoredMasses], np.ndarray], fusion: str | None = None) -> None:
        methods[name] = (fn, fusion)
        groups.setdefault(group, []).append(name)

    b = heads_for()
    base_fn = _scorer_fn(head_rows(b.heads.heads, H), Variant())
    add("rows and filter", "QRHead 16 (query rows)", base_fn)
    for variant in (Variant("query", True), Variant("suffix"), Variant("suffix", True)):
        d = heads_for(variant=variant)
        add("rows and filter", f"QRHead 16 ({variant.label})", _scorer_fn(head_rows(d.heads.heads, H), variant))
    add("rows and filter", "QRHead 16, uncalibrated", _scorer_fn(head_rows(b.heads.heads, H), Variant(calibrate=False)))
    for k in (8, 32):
        d = heads_for(k=k)
        add("head count", f"QRHead {k}", _scorer_fn(head_rows(d.heads.heads, H), Variant()))
    for data in (d for d in by_data if d != base["data"]):
        d = heads_for(data=data)
        add("detection data", f"QRHead 16, detected on {data}", _scorer_fn(head_rows(d.heads.heads, H), Variant()))
    d = heads_for(criterion="ndcg")
    add("detection criterion", "QRHead 16, heads by own nDCG@10", _scorer_fn(head_rows(d.heads.heads, H), Variant()))
    for k in (16, 32):
        d = heads_for(k=k, fit=True)
        add("head weights", f"QRHead {k}, fitted weights", _scorer_fn(head_rows(d.heads.heads, H), Variant(), d.weights))
    fusion_sets = by_data[base["data"]]
    w_lin = fit_fusion_weight(fusion_sets, base_fn, "linear")
    add("fusion", f"QRHead 16 + BM25, linear (w={w_lin:g}, fitted)", base_fn, f"linear:{w_lin}")
    add("fusion", "QRHead 16 + BM25, linear (w=0.5)", base_fn, "linear:0.5")
    add("fusion", "QRHead 16 + BM25, reciprocal rank", base_fn, "rrf:0.5")
    add("fusion", "QRHead 16 + input order, reciprocal rank (no scores)", base_fn, "order-rrf:0.5")
    add("fusion", "QRHead 16 + input order, linear on 1/rank (no scores)", base_fn, "order-linear:0.5")
    allw = fit_fusion_weight(fusion_sets, methods["all heads (ICR)"][0], "linear")
    add("fusion", f"all heads + BM25, linear (w={allw:g}, fitted)", methods["all heads (ICR)"][0], f"linear:{allw}")
    d32 = heads_for(k=32, fit=True)
    fn32 = _scorer_fn(head_rows(d32.heads.heads, H), Variant(), d32.weights)
    w32 = fit_fusion_weight(fusion_sets, fn32, "linear")
    add("fusion", f"QRHead 32 fitted + BM25, linear (w={w32:g}, fitted)", fn32, f"linear:{w32}")
    add("fusion", f"QRHead 32 fitted + input order, linear on 1/rank (w={w32:g}, no scores)", fn32,
        f"order-linear:{w32}")
    d32.info["fitted_fusion_weight"] = {"linear": w32, "detection data": base["data"]}
    if registered is not None:  # the set registered when the study runs, fused (what shipping a recommendation gives)
        fn_reg = methods["registered QRHead set (alone)"][0]
        w_reg = fit_fusion_weight(fusion_sets, fn_reg, "linear")
        add("fusion", f"registered QRHead set + BM25, linear (w={w_reg:g}, fitted)", fn_reg, f"linear:{w_reg}")

    # the fusion weights fitted on the detection data, recorded with the base head set they were fitted for
    b.info["fitted_fusion_weight"] = {"linear": w_lin, "detection data": base["data"]}
    if heads_dir is not None:
        save_head_sets(scorer, detected, Path(heads_dir), {names[k]: detect_sets[k].data.description for k in present})
        log(f"head sets written to {heads_dir}")

    results: dict[str, Any] = {}
    for key, es in eval_sets.items():
        dense = dense_scores(es, cache) if key != "squad" else None
        fns: dict[str, Method] = {"BM25": lambda it, m, o: np.asarray(it.first_stage)}
        if dense is not None:
            fns["dense (MiniLM)"] = lambda it, m, o, _d=dense: np.asarray(_d[it.qid])
        for name, (fn, fusion) in methods.items():
            if fusion is None:
                fns[name] = lambda it, m, o, _f=fn: _f(m)
            elif fusion.startswith("order-"):  # fused with the input order only (no first-stage scores)
                how, w = fusion.removeprefix("order-").split(":")
                fns[name] = lambda it, m, o, _f=fn, _h=how, _w=float(w): np.asarray(
                    fuse(_f(m)[_input_order(it, o)], None, _h, _w))[_inverse(it, o)]
            else:
                how, w = fusion.split(":")
                fns[name] = lambda it, m, o, _f=fn, _h=how, _w=float(w): np.asarray(fuse(_f(m), it.first_stage, _h, _w))
        res = evaluate(es, fns)
        for order in res:
            average_random(res[order])
        results[key] = res
        log(f"evaluated {key}")
    return {
        "model": scorer.model_name,
        "sets": {k: {"label": es.label, "description": es.data.description, "queries": len(es.data.items),
                     "measures": list(es.measures)} for k, es in eval_sets.items()},
        "detection": {k: {"description": s.data.description, "examples": len(s.golds()[0])} for k, s in detect_sets.items()},
        "groups": groups,
        "head_sets": {v.name: {"heads": str(v.heads), "weights": None if v.weights is None else
                               [round(float(x), 4) for x in v.weights], **v.info} for v in detected.values()},
        "per_query": results,
    }


def save_head_sets(scorer: QRHeadScorer, detected: dict[str, DetectedHeads], folder: Path,
                   detection: dict[str, str]) -> list[Path]:
    """Every head set of the study as a head-set file (``HeadSet.from_json`` / ``heads=PATH``), named
    after its configuration, so the one the study picks can be shipped as it is (scripts/ship_head_set.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, d in enumerate(sorted(detected.values(), key=lambda v: v.name)):
        cfg = json.loads(d.name)
        slug = "-".join(str(cfg[k]).replace(" ", "_").replace("/", "_").lower() for k in sorted(cfg))
        used = list(detection) if cfg["data"] == "both" else [cfg["data"]]
        info = {**d.info, "configuration": cfg, "data": "; ".join(f"{k}: {detection[k]}" for k in used)}
        hs = HeadSet(d.heads.heads, name="qrhead", model=scorer.model_name, shape=scorer.shape,
                     info=info, weights=None if d.weights is None else tuple(float(x) for x in d.weights))
        path = folder / f"{i:02d}-{slug}.json"
        hs.to_json(path)
        out.append(path)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Quality study: {report['model']}", ""]
    for key, meta in report["sets"].items():
        res = report["per_query"][key]
        lines += [f"## {meta['label']}", "", meta["description"], ""]
        methods = [m for g in report["groups"].values() for m in g]
        for measure in meta["measures"]:
            lines.append(table(res, [m for m in methods if any(m in r for r in res.values())], measure))
            lines.append("")
    return "\n".join(lines)
