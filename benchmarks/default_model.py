"""Inputs to the choice of the embedded default model (docs/default-model.md).

    python -m benchmarks.default_model

For each candidate (with the head set detected for it by scripts/reproduce_results.sh default): MRR and
top-1 accuracy on the hand-written set of tests/data/handwritten_set.json, seconds per query there, and
the SciFact figures from docs/results/default-*.json (nDCG@10 on 60 seeded test queries, both orders).
Run it on a quiet machine: the two models are timed one after the other in the same process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.packaged import PACKAGED_MODELS
from qrhead_integrations.eval.rerank import load_result

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {"smollm2-135m-instruct": "default-smollm2-60", "qwen2.5-coder-0.5b-instruct": "default-qwen05-60"}


def main() -> None:
    data = json.loads((ROOT / "tests" / "data" / "handwritten_set.json").read_text())
    rows = []
    for name, stem in CANDIDATES.items():
        res = ROOT / "docs" / "results" / f"{stem}.json"
        heads = res.with_suffix(".heads.json")
        scorer = QRHeadScorer.from_pretrained(name, str(heads))
        scorer.score("warm up", data["passages"][:2])
        ranks, t0 = [], time.perf_counter()
        for item in data["queries"]:
            scores = scorer.score(item["query"], data["passages"])
            order = np.argsort(-np.asarray(scores), kind="stable")
            ranks.append(int(np.nonzero(order == item["gold"])[0][0]) + 1)
        per_query = (time.perf_counter() - t0) / len(data["queries"])
        r = load_result(res)
        nd = {c: np.mean(list(r.per_query[c]["qrhead"]["nDCG@10"].values())) for c in r.per_query}
        pm = PACKAGED_MODELS[name]
        size = sum(p.stat().st_size for p in pm.part_paths()) / 2**20
        rows.append((name, np.mean(1 / np.asarray(ranks)),
                     np.mean(np.asarray(ranks) == 1), per_query, nd.get("first_stage"), nd.get("shuffled"),
                     size))
    print("| model | hand-written set MRR | top-1 | s/query (10 passages, same run) | SciFact nDCG@10, first-stage "
          "order | SciFact nDCG@10, shuffled | GGUF download (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for name, mrr, top1, spq, fs, sh, size in rows:
        print(f"| {name} | {mrr:.3f} | {top1:.2f} | {spq:.2f} | {fs:.3f} | {sh:.3f} | {size:.0f} |")


if __name__ == "__main__":
    main()
