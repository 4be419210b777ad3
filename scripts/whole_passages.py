"""The shipped default as users call it — whole passages, no truncation — on SciFact test, next to the
study's 128-token cut for the same queries.

    python scripts/whole_passages.py --queries 300 --out docs/results/scifact-whole-passages.json
    python scripts/whole_passages.py --queries 60 --order shuffled --out docs/results/scifact-whole-passages-shuffled.json

Every number of the quality study (docs/quality.md) scores passages cut to 128 tokens (flagged), to keep
~900 model passes affordable on CPU. The library's default is ``max_passage_tokens=None``: a re-ranker
handed SciFact's abstracts (326 SmolLM2 tokens on average, 97% longer than 128) reads them whole, and 20
of them (~6.5-10K tokens) take one or two windows of the 135M model's 8K context. This script measures
that default, unchanged (``QRHeadScorer.from_pretrained()``, ``rank(query, passages,
first_stage_scores=bm25)``: the registered head set, its weights and recommended fusion), in first-stage
order on the study's seeded SciFact test queries, and reads the same queries' 128-token scores of the
same configuration from the study's store (``python -m research collect``; the engine reproduces them to 1e-7,
``scripts/check_default_vs_study.py``). Nothing is chosen here: it reports what users get. ``--order
shuffled`` hands each query's candidates over in the study's seeded shuffled order (with their BM25 scores
permuted alike), the position-bias check; the study stored that order for its first 60 queries.

Per-query results go to a JSONL file under the user cache as they are computed; a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import repo_root  # noqa: F401  (research/ on sys.path)
import torch

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.fusion import fuse
from qrhead_integrations.engine.loading import cache_root
from qrhead_integrations.eval.data import shared_data_dir
from qrhead_integrations.eval.first_stage import doc_text
from qrhead_integrations.eval.masses import shuffle_permutation
from qrhead_integrations.eval.metrics import mean, paired_bootstrap, per_query, run_from_scores
from research.collect import MassStore
from research.sets import load_set
from research.study import Variant, head_rows, passage_scores

MEASURES = ("nDCG@10", "R@5", "RR")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=60, help="the study's seeded first N SciFact test queries")
    p.add_argument("--out", default=None, help="report path (default: docs/results/scifact-whole-passages"
                                                "[-shuffled].json; a .md table is written beside it)")
    p.add_argument("--data", default=None)
    p.add_argument("--order", choices=("first_stage", "shuffled"), default="first_stage",
                   help="candidates in first-stage order, or in the study's seeded shuffled order (seed 0)")
    args = p.parse_args()
    suffix = "" if args.order == "first_stage" else f"-{args.order}"  # of the report and the JSONL
    args.out = args.out or f"docs/results/scifact-whole-passages{suffix}.json"

    data = load_set("scifact-test", Path(args.data) if args.data else shared_data_dir(), n=args.queries)
    whole = QRHeadScorer.from_pretrained()  # exactly the default: no truncation
    cut = QRHeadScorer.from_pretrained(max_passage_tokens=128)  # only for the study store's key
    hs = cut.heads
    opts = cut.effective_options
    rows = head_rows(hs.heads, cut.shape.num_heads)
    weights = np.asarray(hs.weights) if hs.weights else None
    store = MassStore(cache_root() / "eval" / "tokens", cut, {
        "set": data.name, "depth": len(data.items[0].doc_ids), "order": args.order, "seed": 0})

    stem = cache_root() / "eval" / "whole-passages" / f"scifact-test-{whole.model_name.replace('/', '__')}"
    log = stem.with_name(f"{stem.name}{suffix}.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            done[rec["qid"]] = rec
    from tqdm.auto import tqdm

    for it in tqdm(data.items, desc="whole passages"):
        if it.qid in done:
            continue
        t = time.process_time()
        w = time.time()
        perm = (shuffle_permutation(it.qid, len(it.doc_ids), 0) if args.order == "shuffled"
                else list(range(len(it.doc_ids))))
        ranked = whole.rank(it.query, [it.passages[i] for i in perm],
                            first_stage_scores=[float(it.first_stage[i]) for i in perm])
        fused = np.zeros(len(ranked))  # indexed by first-stage position, whatever the order handed over
        alone = np.zeros(len(ranked))
        for r in ranked:
            fused[perm[r.index]], alone[perm[r.index]] = r.score, r.qrhead_score
        rec = {"qid": it.qid, "fused": fused.tolist(), "alone": alone.tolist(),
               "windows": len({r.window for r in ranked}), "truncated": sum(r.truncated for r in ranked),
               "cpu_s": time.process_time() - t, "wall_s": time.time() - w, "threads": torch.get_num_threads()}
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done[it.qid] = rec

    items = {it.qid: it for it in data.items}
    stored = {q: m for q in items if q in done and (m := store.get(q, items[q].doc_ids)) is not None}
    qids = list(stored)
    doc_ids = {q: items[q].doc_ids for q in qids}
    scores: dict[str, dict[str, list[float]]] = {"BM25": {}, "default, 128-token cut (study)": {},
                                                 "heads alone, 128-token cut (study)": {},
                                                 "default, whole passages": {}, "heads alone, whole passages": {}}
    for q in qids:
        it = items[q]
        alone128 = passage_scores(stored[q], Variant(), rows, weights)
        scores["BM25"][q] = list(it.first_stage)
        scores["default, 128-token cut (study)"][q] = list(fuse(alone128, it.first_stage, opts.fusion,
                                                                 opts.fusion_weight))
        scores["heads alone, 128-token cut (study)"][q] = list(alone128)
        scores["default, whole passages"][q] = done[q]["fused"]
        scores["heads alone, whole passages"][q] = done[q]["alone"]
    pairs = [("default, whole passages", "BM25"), ("default, whole passages", "default, 128-token cut (study)"),
             ("heads alone, whole passages", "heads alone, 128-token cut (study)"),
             ("default, 128-token cut (study)", "BM25"), ("heads alone, whole passages", "BM25")]
    first_log = stem.with_name(f"{stem.name}.jsonl")
    if suffix and first_log.is_file():  # the same queries' first-stage-order run, when it has them all
        first = {r["qid"]: r for r in map(json.loads, first_log.read_text().splitlines())}
        if all(q in first for q in qids):
            name = "default, whole passages, first-stage order"
            scores[name] = {q: first[q]["fused"] for q in qids}
            pairs.append(("default, whole passages", name))
    per = {name: per_query(data.qrels, run_from_scores(doc_ids, s), MEASURES) for name, s in scores.items()}
    table = {name: {m: mean(pq[m]) for m in MEASURES} for name, pq in per.items()}

    def diff(a: str, b: str, m: str = "nDCG@10") -> dict[str, float | int]:
        d = paired_bootstrap(per[a][m], per[b][m])
        return {"mean": d.mean, "low": d.low, "high": d.high, "n": d.n}

    comparisons = {f"{a} - {b}": diff(a, b) for a, b in pairs}
    recs = [done[q] for q in qids]
    report = {"queries": len(qids), "set": data.description, "order": args.order, "measures": list(MEASURES),
              "table": table,
              "comparisons_ndcg10": comparisons,
              "per_query_ndcg10": {name: per[name]["nDCG@10"] for name in per},
              "whole": {"tokens_mean": float(np.mean([  # passage tokens (title + text), template excluded
                  sum(len(whole.tokenizer(doc_text(x))["input_ids"]) for x in items[q].passages) for q in qids])),
                        "two_windows": sum(r["windows"] > 1 for r in recs),
                        "truncated": sum(r["truncated"] for r in recs),
                        "cpu_s_mean": float(np.mean([r["cpu_s"] for r in recs])),
                        "threads": sorted({r.get("threads") for r in recs}, key=str)},
              "head_set": {"heads": len(hs), "weights": bool(hs.weights), "fusion": opts.fusion,
                           "fusion_weight": opts.fusion_weight},
              "command": f"python scripts/whole_passages.py --queries {args.queries}"
                         + ("" if args.order == "first_stage" else f" --order {args.order}") + f" --out {args.out}"}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    order = "first-stage order" if args.order == "first_stage" else "seeded shuffled order"
    lines = [f"# SciFact test, whole passages vs the study's 128-token cut ({len(qids)} queries, {order})", "",
             f"`{report['command']}`", "",
             "| method | " + " | ".join(MEASURES) + " |", "|---|" + "---|" * len(MEASURES)]
    lines += [f"| {n} | " + " | ".join(f"{table[n][m]:.3f}" for m in MEASURES) + " |" for n in table]
    lines += ["", "Paired bootstrap, nDCG@10 (10,000 resamples, 95% interval):", ""]
    lines += [f"- {k}: {v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" for k, v in comparisons.items()]
    w = report["whole"]
    lines += ["", f"Whole passages: {w['tokens_mean']:.0f} tokens per query on average, {w['two_windows']} of "
                  f"{len(qids)} queries in two windows, {w['truncated']} passages truncated, "
                  f"{w['cpu_s_mean']:.0f} CPU s per query (torch threads: {', '.join(map(str, w['threads']))})."]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
