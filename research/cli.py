"""``python -m research``: the quality study (``collect``, ``study``) and the needle test (``needle``).

Research code, not part of the installed package: run it from the repository root of a checkout with
the package installed (``pip install -e '.[eval]'``). It reuses the product's evaluation helpers
(:mod:`qrhead_integrations.eval.cli`) and the same cache folder as ``qrhead eval``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qrhead_integrations.cli_options import add_load_args, load_from_args
from qrhead_integrations.eval.cli import add_common_args, cache_dir, scorer_from_args, single_process

from .sets import SETS

PROG = "python -m research"

#: The sets of the quality study (scripts/quality_study.sh collects exactly these).
STUDY_PLAN = {
    # what the study reads from the store (scripts/quality_study.sh collects it); a set or order not
    # (yet) stored is left out of the report, each order is evaluated on the queries stored for it
    "detect": {"scifact": ("scifact-train", 128, 0), "nq": ("nq", 64, 0)},
    "eval": {"scifact-test": [(60, 0), (60, 60), (180, 120)], "nq": [(60, 1000)], "hotpotqa": [(None, 0)],
             "squad": {"questions": 40, "chunk_tokens": 256, "max_passage_tokens": 512}},
}
STUDY_PLAN_SMALL = {  # Qwen2.5-Coder-0.5B: ~2.5x SmolLM2's CPU time per prompt, a reduced protocol
    "detect": {"scifact": ("scifact-train", 32, 0)},
    "eval": {"scifact-test": [(30, 0)], "hotpotqa": [(40, 0)]},
    "min_detect": 24,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The ranking-quality study (collect, then study) and the needle test: research "
                               "code of a qrhead-integrations checkout, run from the repository root.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    k = sub.add_parser("collect", help="store every head's per-token masses for an evaluation set (resumable)")
    add_common_args(k, out=False)
    k.add_argument("--set", required=True, choices=[*SETS, "squad"])
    k.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    k.add_argument("--queries", type=int, default=None, help="seeded subset of this many queries (default: all)")
    k.add_argument("--skip", type=int, default=0, help="skip this many queries of the seeded order first")
    k.add_argument("--orders", nargs="+", default=["first_stage", "shuffled"], choices=["first_stage", "shuffled"])
    k.add_argument("--chunk-tokens", type=int, default=256, help="squad: chunk size in tokens")
    k.set_defaults(func=cmd_collect)

    st = sub.add_parser("study", help="evaluate every scoring variant from the stored masses (no model passes)")
    add_common_args(st)
    st.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    st.add_argument("--heads-dir", default=None,
                    help="write every head set the study detects here (head-set JSON files, to ship one)")
    st.add_argument("--compare-heads", action="append", default=[], metavar="LABEL=PATH",
                    help="also evaluate this head-set file as a baseline row named LABEL (repeatable), "
                         "e.g. the set shipped before a study")
    st.set_defaults(func=cmd_study)

    n = sub.add_parser("needle", help="needle in a haystack: retrieval-head detection and head masking")
    add_load_args(n)
    n.add_argument("--essays", required=True, help="folder of haystack .txt files (../shared/data/pg-essays)")
    n.add_argument("--lengths", nargs="+", type=int, default=[1024, 2048, 3072], help="context tokens")
    n.add_argument("--depths", nargs="+", type=float, default=[0.1, 0.3, 0.5, 0.7, 0.9])
    n.add_argument("--needles", type=int, default=3, help="how many of the built-in needles (max 3)")
    n.add_argument("--top-k", type=int, default=16)
    n.add_argument("--detect-out", default=None, help="detect copy-paste retrieval heads and write them here")
    n.add_argument("--mask", nargs="*", default=[],
                   help="head sets to mask, e.g. qrhead retrieval random:16:0 or a JSON file ('none' = no mask)")
    n.add_argument("--heads", default=None, help="the QRHead set meant by 'qrhead' (default: registered)")
    n.add_argument("--out", required=True)
    n.set_defaults(func=cmd_needle)
    return parser


def data_root(args: argparse.Namespace) -> Path:
    from qrhead_integrations.eval.data import shared_data_dir

    root = Path(args.data) if args.data else shared_data_dir()
    if root is None or not root.is_dir():
        raise SystemExit(f"{PROG}: error: no data folder: pass --data (the shared data folder)")
    return root


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import MassStore, collect, collect_chunks
    from .sets import load_set

    single_process(f"{PROG} collect")
    scorer = scorer_from_args(args)
    root = data_root(args)
    if args.set == "squad":
        n = collect_chunks(scorer, root / "squad-articles", chunk_tokens=args.chunk_tokens,
                           n_questions=args.queries, seed=args.seed, cache_root=cache_dir(args))
        print(f"squad: {n} questions stored", file=sys.stderr)
        return 0
    data = load_set(args.set, root, n=args.queries, skip=args.skip, seed=args.seed)
    for order in args.orders:
        store = MassStore(cache_dir(args) / "tokens", scorer, {"set": data.name, "depth": len(data.items[0].doc_ids),
                                                               "order": order, "seed": args.seed})
        got = collect(scorer, data.items, order=order, seed=args.seed, store=store, desc=f"{args.set} {order}")
        secs = [m.seconds for m in got.values()]
        print(f"{args.set} {order}: {len(got)} queries in {store.dir} (mean {np.mean(secs):.1f} s per query)",
              file=sys.stderr)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .study import markdown, run_study, save

    scorer = scorer_from_args(args)
    plan = STUDY_PLAN_SMALL if "qwen" in scorer.model_name.lower() else STUDY_PLAN
    compare = {}
    for item in args.compare_heads:
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise SystemExit(f"{PROG}: error: --compare-heads {item!r}: expected LABEL=PATH")
        if not Path(path).is_file():
            raise SystemExit(f"{PROG}: error: --compare-heads {item!r}: no such file {path}")
        compare[label.strip()] = path.strip()
    report = run_study(scorer, data_root(args), cache_dir(args) / "tokens", plan,
                       min_detect=plan.get("min_detect", 32),
                       heads_dir=Path(args.heads_dir) if args.heads_dir else None, compare_heads=compare,
                       log=lambda s: print(s, file=sys.stderr))
    save(args.out, report)
    Path(args.out).with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}", file=sys.stderr)
    return 0


def cmd_needle(args: argparse.Namespace) -> int:
    from qrhead_integrations.engine.heads import resolve_heads
    from qrhead_integrations.engine.scoring import QRHeadScorer

    from .needle import detect_retrieval_heads, load_haystack, masked_accuracy, trial_grid

    single_process(f"{PROG} needle")
    scorer = QRHeadScorer.from_pretrained(heads="all", **load_from_args(args))
    haystack = load_haystack(args.essays)
    grid = trial_grid(args.lengths, args.depths, args.needles)
    report: dict[str, Any] = {"model": scorer.model_name, "trials": len(grid), "lengths": args.lengths,
                              "depths": args.depths, "needles": args.needles, "accuracy": {}, "answers": {}}
    retrieval = None
    if args.detect_out:
        retrieval, trials = detect_retrieval_heads(scorer, haystack, grid, args.top_k)
        retrieval.to_json(args.detect_out)
        report["retrieval_heads"] = str(retrieval)
        report["accuracy"]["none (detection run)"] = float(np.mean([t.accuracy for t in trials]))
        print(f"retrieval heads: {retrieval} -> {args.detect_out}", file=sys.stderr)
    for spec in args.mask:
        if spec == "none":
            mask = None
        elif spec == "qrhead":
            mask = resolve_heads(args.heads, scorer.shape, scorer.model_name)
        elif spec == "retrieval" and retrieval is not None:
            mask = retrieval
        else:
            mask = resolve_heads(spec, scorer.shape, scorer.model_name)
        trials = masked_accuracy(scorer, haystack, grid, mask, desc=f"mask {spec}")
        report["accuracy"][spec] = float(np.mean([t.accuracy for t in trials]))
        report["answers"][spec] = [t.answer for t in trials]
        if mask is not None:
            report.setdefault("masked_heads", {})[spec] = str(mask)
        print(f"mask {spec}: accuracy {report['accuracy'][spec]:.3f}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report["accuracy"], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)
