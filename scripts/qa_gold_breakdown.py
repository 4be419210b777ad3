"""Where two selectors' answers differ, and why: questions split by which selector's context holds the
gold passage, with each selector's correct answers in every cell (from a `qrhead eval qa` JSONL).
``--pair`` instead prints the paired bootstrap difference of two selectors' accuracy from committed
summaries (``A.json:selector``), over the questions both answered (e.g. the same selector in two runs).

    python scripts/qa_gold_breakdown.py ~/.cache/qrhead-integrations/eval/qa/qa-nq-budget-test.jsonl \
        bm25 qrhead-bm25
    python scripts/qa_gold_breakdown.py --pair docs/results/qa-nq50-window2048-qwen05.json:qrhead \
        docs/results/qa-nq50-qwen05.json:qrhead

``--pool`` pools several committed summaries of disjoint questions (e.g. two test runs) and prints the
paired bootstrap difference of two selectors over all of them:

    python scripts/qa_gold_breakdown.py --pool qrhead-bm25 bm25 docs/results/qa-nq-budget-test.json \
        docs/results/qa-nq-budget-test400.json

HotpotQA records (two supporting paragraphs) split by the share of them each context holds (0, 0.5, 1);
``--metric f1`` (or ``em``) sums the official answer F1 (EM) in each cell instead of correct answers:

    python scripts/qa_gold_breakdown.py docs/results/qa-hotpot-haystack-qwen05.jsonl bm25 qrhead-bm25 --metric f1

``--questions-from R.json`` keeps only the questions of a committed summary (e.g. the first 18 of a
longer run, to compare with a shorter one); each selector's accuracy and evidence recall over the kept
questions are printed under the table, and by the gold passage's position (first / middle / last).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from qrhead_integrations.eval.metrics import paired_bootstrap
from qrhead_integrations.eval.qa import read_done


def load_summary(path: str | Path) -> dict[str, Any]:
    """A committed `qrhead eval qa` summary: selector -> its aggregate and per-question ``correct``."""
    return json.loads(Path(path).read_text())["summary"]


def rates(rows: list[dict[str, Any]], metric: str = "correct") -> tuple[int, float, float]:
    """Questions, mean ``metric`` (accuracy by default) and mean evidence recall of one selector's records."""
    n = len(rows)
    return n, sum(float(r[metric]) for r in rows) / n, sum(r["evidence_recall"] for r in rows) / n


def pair(a: str, b: str) -> None:
    """Paired bootstrap difference a - b of per-question correctness, on the questions both hold."""

    def correct(spec: str) -> dict[str, float]:
        path, _, selector = spec.rpartition(":")
        return load_summary(path)[selector]["correct"]

    ca, cb = correct(a), correct(b)
    both = sorted(ca.keys() & cb.keys())
    ca, cb = {q: ca[q] for q in both}, {q: cb[q] for q in both}
    print(f"{len(both)} questions: {sum(ca.values()) / len(both):.3f} vs {sum(cb.values()) / len(both):.3f}, "
          f"{paired_bootstrap(ca, cb)}")


def pool(a: str, b: str, paths: list[str]) -> None:
    """Paired bootstrap difference a - b over the union of several runs' questions (which must not overlap)."""
    ca: dict[str, float] = {}
    cb: dict[str, float] = {}
    for path in paths:
        summary = load_summary(path)
        ra, rb = summary[a]["correct"], summary[b]["correct"]
        if ra.keys() != rb.keys():
            raise SystemExit(f"{path}: {a} and {b} answered different questions")
        if overlap := ca.keys() & ra.keys():
            raise SystemExit(f"{path}: {len(overlap)} questions already pooled from an earlier file")
        ca.update(ra)
        cb.update(rb)
    n = len(ca)
    print(f"{n} questions from {len(paths)} runs: {a} {sum(ca.values()) / n:.3f}, {b} {sum(cb.values()) / n:.3f}, "
          f"{a} - {b} {paired_bootstrap(ca, cb)}")


def main() -> None:
    if sys.argv[1:2] == ["--pair"] and len(sys.argv) == 4:
        return pair(sys.argv[2], sys.argv[3])
    if sys.argv[1:2] == ["--pool"] and len(sys.argv) >= 5:
        return pool(sys.argv[2], sys.argv[3], sys.argv[4:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jsonl", type=Path)
    p.add_argument("a", help="selector, e.g. bm25")
    p.add_argument("b", help="selector, e.g. qrhead-bm25")
    p.add_argument("--questions-from", type=Path, default=None,
                   help="a committed summary (.json): keep only the questions it holds")
    p.add_argument("--metric", choices=("correct", "f1", "em"), default="correct",
                   help="what each cell sums: correct answers (default) or HotpotQA's answer F1 / EM")
    args = p.parse_args()
    records = list(read_done(args.jsonl).values())
    if args.questions_from is not None:
        summary = load_summary(args.questions_from)
        keep = set().union(*(s["correct"].keys() for s in summary.values()))
        records = [r for r in records if r["id"] in keep]
    multi = any(len(r["gold"]) > 1 for r in records)  # HotpotQA: the share of the supporting paragraphs

    def held(row: dict[str, Any]) -> Any:
        return round(row["evidence_recall"], 2) if multi else row["evidence_recall"] > 0

    metric = args.metric
    cells: Counter = Counter()
    for rec in records:
        sa, sb = rec["selectors"][args.a], rec["selectors"][args.b]
        key = (held(sa), held(sb))
        cells[key, "n"] += 1
        cells[key, args.a] += float(sa[metric])
        cells[key, args.b] += float(sb[metric])
    what = "gold share" if multi else "gold"
    print(f"| {what} in {args.a} | {what} in {args.b} | questions | {args.a} {metric} | {args.b} {metric} |")
    print("|---|---|---|---|---|")
    for key in sorted({k for k, _ in cells}, reverse=True):
        a, b = cells[key, args.a], cells[key, args.b]
        shown = (f"{a:g}", f"{b:g}") if metric != "f1" else (f"{a:.2f}", f"{b:.2f}")
        print(f"| {key[0]} | {key[1]} | {cells[key, 'n']} | {shown[0]} | {shown[1]} |")
    label = {"correct": "accuracy", "f1": "F1", "em": "EM"}[metric]
    for name in (args.a, args.b):
        n, value, recall = rates([r["selectors"][name] for r in records], metric)
        print(f"{name}: {n} questions, {label} {value:.3f}, evidence recall {recall:.2f}")
        for position in sorted({r.get("position") for r in records} - {None}):
            n, value, recall = rates([r["selectors"][name] for r in records if r.get("position") == position],
                                     metric)
            print(f"  gold {position}: {n} questions, {label} {value:.2f}, evidence recall {recall:.2f}")


if __name__ == "__main__":
    main()
