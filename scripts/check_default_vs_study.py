"""The shipped default, run through the engine, against the study's offline numbers for the same
configuration (from the stored per-head masses, float16): the study measures what users get.

    python scripts/check_default_vs_study.py [--queries 5]

For a few SciFact test queries (first-stage order, BM25 scores), prints the largest difference between
the engine's scores (``QRHeadScorer.rank(..., first_stage_scores=bm25)``: the shipped head set, its
fitted weights and the recommended fusion) and the study's, and whether the rankings agree.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import repo_root  # noqa: F401  (research/ on sys.path)

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.fusion import fuse
from qrhead_integrations.eval.data import shared_data_dir
from research.collect import MassStore
from research.sets import load_set
from research.study import Variant, head_rows, passage_scores


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queries", type=int, default=5)
    args = p.parse_args()
    scorer = QRHeadScorer.from_pretrained(max_passage_tokens=128)
    hs = scorer.heads
    opts = scorer.effective_options
    print(f"default: {len(hs)} heads, weights {'fitted' if hs.weights else 'uniform'}, fusion={opts.fusion} "
          f"w={opts.fusion_weight}")
    data = load_set("scifact-test", shared_data_dir(), n=60)
    cache = Path.home() / ".cache" / "qrhead-integrations" / "eval" / "tokens"
    store = MassStore(cache, scorer, {"set": data.name, "depth": len(data.items[0].doc_ids), "order": "first_stage",
                                      "seed": 0})
    rows = head_rows(hs.heads, scorer.shape.num_heads)
    weights = np.asarray(hs.weights) if hs.weights else None
    worst, agree, n = 0.0, 0, 0
    for it in data.items[: args.queries]:
        m = store.get(it.qid, it.doc_ids)
        if m is None:
            continue
        study = np.asarray(fuse(passage_scores(m, Variant(), rows, weights), it.first_stage, opts.fusion,
                                opts.fusion_weight))
        ranked = scorer.rank(it.query, list(it.passages), first_stage_scores=list(it.first_stage))
        engine = np.zeros(len(ranked))
        for r in ranked:
            engine[r.index] = r.score
        worst = max(worst, float(np.abs(engine - study).max()))
        agree += int(list(np.argsort(-engine, kind="stable")[:10]) == list(np.argsort(-study, kind="stable")[:10]))
        n += 1
    print(f"{n} queries: max |engine - study| = {worst:.2e}; same top-10 order for {agree} of {n}")


if __name__ == "__main__":
    main()
