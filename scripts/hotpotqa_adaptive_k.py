"""Issue #28 follow-up: would a per-question k (keep paragraphs by score) beat the fixed k? Read-only.

The reader rule (scripts/hotpotqa_reader_rule.py) found that a fixed smaller k loses: the default's top 2
hold both supporting paragraphs for only 0.35-0.40 of the dev questions. An adaptive k would pay only if
the default's scores say *which* questions those are. This script asks that of the stored dev files, with
no model run: the default's fused scores per paragraph (hotpotqa-fusion.dev.jsonl, fused exactly as the
library does) and the 0.5B reader's answer F1 from the top k in {2, 3, 4, K} in input order
(hotpotqa-reader.dev.jsonl). Two families, each k rounded up to the nearest k the reader answered from:

- threshold: keep the paragraphs whose fused score (min-max normalised, so the top one is 1) is >= tau;
- gap: k = 2 where the fused score drops by >= g from the 2nd to the 3rd paragraph, else K.

It reports each variant's mean F1 beside the fixed K and the per-question best k (an upper bound no
rule can pass), and how well the gap tells the questions whose top 2 hold both supporting paragraphs
(ROC AUC: 0.5 = no better than chance, 1 = perfectly). Dev questions only: it chooses nothing and claims nothing about the test questions.

    python scripts/hotpotqa_adaptive_k.py     # prints a markdown table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hotpotqa_fusion_rule import fused_order  # noqa: E402  (the library's fusion, the harness's tie order)
from hotpotqa_reader_rule import CURRENT_K, SMALL_KS  # noqa: E402  (the k the reader answered from)

RESULTS = REPO / "docs" / "results"
WEIGHT = 0.5  # the shipped fusion weight (hotpotqa-fusion.json: none beats it)
TAUS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
GAPS = (0.1, 0.2, 0.3, 0.4)


def auc(labels: list[bool], values: list[float]) -> float:
    """ROC AUC: the chance that a random positive's value exceeds a random negative's (ties count half)."""
    pos = [v for v, y in zip(values, labels) if y]
    neg = [v for v, y in zip(values, labels) if not y]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def questions(setting: str) -> tuple[int, list[tuple[np.ndarray, dict[int, float], bool]]]:
    """(K, [(fused scores best first, {k: reader F1}, top 2 hold both)]) for one setting's dev questions."""
    from qrhead_integrations.engine.fusion import fuse

    reads = {(r["setting"], r["qid"]): r for r in map(json.loads, (RESULTS / "hotpotqa-reader.dev.jsonl").read_text().splitlines())}
    big = CURRENT_K[setting]
    out = []
    for line in (RESULTS / "hotpotqa-fusion.dev.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["setting"] != setting:
            continue
        fused = np.asarray(fuse(rec["qrhead_scores"], rec["bm25_scores"], "linear", WEIGHT))
        cells = reads[(setting, rec["qid"])]["cells"]
        order = fused_order(rec, WEIGHT)
        out.append((fused[order], {k: cells[f"k={k},input"]["f1"] for k in (*SMALL_KS, big)},
                    set(order[:2]) >= set(rec["gold"])))
    return big, out


def main() -> None:
    print("| setting | fixed K | best k per question (bound) | threshold tau: F1 (share at k=2) | gap g: F1 (share at k=2) "
          "| top 2 hold both | gap tells which: AUC |")
    print("|---|---|---|---|---|---|---|")
    for setting in ("distractor", "haystack"):
        big, qs = questions(setting)
        ks = sorted(qs[0][1])
        fixed = np.mean([f1[big] for _, f1, _ in qs])
        bound = np.mean([max(f1.values()) for _, f1, _ in qs])
        both = [b for _, _, b in qs]
        thr = []
        for tau in TAUS:
            picks = [next((k for k in ks if k >= int((s >= tau).sum())), big) for s, _, _ in qs]
            thr.append(f"{tau}: {np.mean([q[1][k] for k, q in zip(picks, qs)]):.3f} ({picks.count(2) / len(qs):.2f})")
        gap = []
        for g in GAPS:
            picks = [2 if s[1] - s[2] >= g else big for s, _, _ in qs]
            gap.append(f"{g}: {np.mean([q[1][k] for k, q in zip(picks, qs)]):.3f} ({picks.count(2) / len(qs):.2f})")
        tells = auc(both, [float(s[1] - s[2]) for s, _, _ in qs])
        print(f"| {setting} ({len(qs)} dev q) | k={big}: {fixed:.3f} | {bound:.3f} | {'; '.join(thr)} | {'; '.join(gap)} "
              f"| {np.mean(both):.2f} | {tells:.2f} |")


if __name__ == "__main__":
    main()
