"""Paired bootstrap differences between two methods of a quality-study report, on every set and order.

    python scripts/study_compare.py docs/results/study-smollm2.json \
        "registered QRHead set + BM25, linear (w=0.5, fitted)" "random heads"

The study's tables compare every method with BM25 and all heads; this gives any other pair from the
same per-query values (10,000 resamples, seed 0, as in the tables).
"""

from __future__ import annotations

import argparse
import json

from qrhead_integrations.eval.metrics import paired_bootstrap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="a study JSON (python -m research study --out)")
    ap.add_argument("a", help="method name (a row of the study's tables)")
    ap.add_argument("b", help="the method it is compared with")
    args = ap.parse_args()
    report = json.load(open(args.report))
    for name, orders in report["per_query"].items():
        for order, methods in orders.items():
            if args.a not in methods or args.b not in methods:
                continue
            for measure, a in methods[args.a].items():
                d = paired_bootstrap(a, methods[args.b][measure])
                star = " *" if d.low > 0 or d.high < 0 else ""
                print(f"{name:13s} {order:11s} {measure:8s} {args.a} vs {args.b}: {d}{star}")


if __name__ == "__main__":
    main()
