"""``qrhead eval``: re-ranking and chunk-selection experiments with every baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def add_eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluation experiments (re-ranking, chunk selection, needle)")
    esub = p.add_subparsers(dest="eval_command", required=True)

    r = esub.add_parser("rerank", help="re-rank first-stage candidates of a BEIR-layout data set")
    _common(r)
    r.add_argument("--data", required=True, help="BEIR folder (e.g. ../shared/data/scifact)")
    r.add_argument("--split", default="test")
    r.add_argument("--depth", type=int, default=20, help="first-stage candidates re-ranked per query")
    r.add_argument("--run", default=None, help="first-stage run in the data set's runs/ (default: BM25)")
    r.add_argument("--bm25-scores", action="store_true",
                   help="with --run: keep the run's candidates and order, score them with BM25 over the corpus "
                        "(the bm25 baseline and fusion), for runs without meaningful scores")
    r.add_argument("--queries", type=int, default=None, help="seeded subset of this many queries (default: all)")
    r.add_argument("--detect-data", default=None, help="BEIR folder whose --detect-split detects the heads")
    r.add_argument("--detect-split", default="train")
    r.add_argument("--detect-queries", type=int, default=64, help="examples per detection subset")
    r.add_argument("--detect-subsets", type=int, default=1, help="disjoint detection subsets (stability)")
    r.add_argument("--detect-order", default="shuffled", choices=["shuffled", "first_stage"],
                   help="candidate order of the detection examples (default shuffled: position and relevance "
                        "decoupled)")
    r.add_argument("--orders", nargs="+", default=["first_stage", "shuffled"], choices=["first_stage", "shuffled"])
    r.add_argument("--no-remedies", action="store_true", help="skip the as_given placement (the qrhead-both remedy; qrhead-poscorr needs no extra pass)")
    r.add_argument("--random-seeds", type=int, default=5)
    r.add_argument("--no-dense", action="store_true", help="skip the dense (MiniLM) baseline")
    r.add_argument("--measures", nargs="+", default=["nDCG@10"])
    r.set_defaults(func=cmd_rerank)

    c = esub.add_parser("chunks", help="select chunks of long documents (SQuAD articles)")
    _common(c)
    c.add_argument("--data", required=True, help="long-context folder (documents.jsonl + questions.jsonl)")
    c.add_argument("--chunk-tokens", type=int, default=128, help="chunk size in tokens (LlamaIndex SentenceSplitter)")
    c.add_argument("--chunk-overlap", type=int, default=0)
    c.add_argument("--questions", type=int, default=None, help="seeded subset of questions (default: all)")
    c.add_argument("--ks", nargs="+", type=int, default=[1, 3, 5])
    c.add_argument("--random-seeds", type=int, default=5)
    c.add_argument("--no-dense", action="store_true")
    c.set_defaults(func=cmd_chunks)

    k = esub.add_parser("collect", help="store every head's per-token masses for an evaluation set (resumable)")
    _common(k, out=False)
    k.add_argument("--set", required=True, choices=["scifact-test", "scifact-train", "hotpotqa", "nq", "squad"])
    k.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    k.add_argument("--queries", type=int, default=None, help="seeded subset of this many queries (default: all)")
    k.add_argument("--skip", type=int, default=0, help="skip this many queries of the seeded order first")
    k.add_argument("--orders", nargs="+", default=["first_stage", "shuffled"], choices=["first_stage", "shuffled"])
    k.add_argument("--chunk-tokens", type=int, default=256, help="squad: chunk size in tokens")
    k.set_defaults(func=cmd_collect)

    st = esub.add_parser("study", help="evaluate every scoring variant from the stored masses (no model passes)")
    _common(st)
    st.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    st.add_argument("--heads-dir", default=None,
                    help="write every head set the study detects here (head-set JSON files, to ship one)")
    st.add_argument("--compare-heads", action="append", default=[], metavar="LABEL=PATH",
                    help="also evaluate this head-set file as a baseline row named LABEL (repeatable), "
                         "e.g. the set shipped before a study")
    st.set_defaults(func=cmd_study)

    n = esub.add_parser("needle", help="needle in a haystack: retrieval-head detection and head masking")
    n.add_argument("--model", default=None)
    n.add_argument("--device", default=None)
    n.add_argument("--dtype", default=None)
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

    from .qa import add_qa_parser  # `qrhead eval qa`: end-to-end long-context QA (qa.py)

    add_qa_parser(esub)


def _common(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("--model", default=None, help="model (default: the embedded default)")
    p.add_argument("--heads", default=None, help="QRHead set under test (default: detected here, else registered)")
    p.add_argument("--retrieval-heads", default="retrieval",
                   help="copy-paste retrieval heads: registered variant name or JSON file ('none' to skip)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--max-passage-tokens", type=int, default=128)
    p.add_argument("--max-context-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="folder for cached per-head masses (default: user cache)")
    if out:
        p.add_argument("--out", required=True, help="JSON result file (a Markdown report is written beside it)")


def _main_process() -> bool:
    from ..engine import parallel

    return parallel.is_main_process()


def _single_process(name: str) -> None:
    from ..engine import parallel

    if parallel.is_distributed():
        raise SystemExit(f"qrhead eval {name} runs in one process (only `eval rerank` and `detect` are "
                         "data-parallel); start it without torchrun / accelerate launch")


def _scorer(args: argparse.Namespace):
    from ..engine.scoring import QRHeadScorer

    return QRHeadScorer.from_pretrained(args.model, "all", device=args.device, dtype=args.dtype,
                                        max_passage_tokens=args.max_passage_tokens,
                                        max_context_tokens=args.max_context_tokens)


def _cache(args: argparse.Namespace) -> Path:
    from ..engine.loading import cache_root

    return Path(args.cache) if args.cache else cache_root() / "eval"


def _head_sets(args: argparse.Namespace, scorer: Any, detected: Any | None) -> dict[str, Any]:
    from ..engine.heads import HeadSetNotFoundError, resolve_heads

    sets: dict[str, Any] = {}
    if args.heads:
        sets["qrhead"] = resolve_heads(args.heads, scorer.shape, scorer.model_name)
    elif detected is not None:
        sets["qrhead"] = detected
    else:
        sets["qrhead"] = resolve_heads(None, scorer.shape, scorer.model_name)
    sets["all-heads"] = "all"
    if args.retrieval_heads and args.retrieval_heads != "none":
        try:
            sets["retrieval-heads"] = resolve_heads(args.retrieval_heads, scorer.shape, scorer.model_name)
        except HeadSetNotFoundError as exc:
            print(f"note: no retrieval-head baseline ({exc})", file=sys.stderr)
    return sets


def _data_root(args: argparse.Namespace) -> Path:
    from .data import shared_data_dir

    root = Path(args.data) if args.data else shared_data_dir()
    if root is None or not root.is_dir():
        raise SystemExit("qrhead: error: no data folder: pass --data (the shared data folder)")
    return root


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import MassStore, collect
    from .sets import load_set

    _single_process("collect")
    scorer = _scorer(args)
    root = _data_root(args)
    if args.set == "squad":
        from .chunks import collect_chunks

        n = collect_chunks(scorer, root / "squad-articles", chunk_tokens=args.chunk_tokens,
                           n_questions=args.queries, seed=args.seed, cache_root=_cache(args))
        print(f"squad: {n} questions stored", file=sys.stderr)
        return 0
    data = load_set(args.set, root, n=args.queries, skip=args.skip, seed=args.seed)
    for order in args.orders:
        store = MassStore(_cache(args) / "tokens", scorer, {"set": data.name, "depth": len(data.items[0].doc_ids),
                                                            "order": order, "seed": args.seed})
        got = collect(scorer, data.items, order=order, seed=args.seed, store=store, desc=f"{args.set} {order}")
        secs = [m.seconds for m in got.values()]
        print(f"{args.set} {order}: {len(got)} queries in {store.dir} (mean {np.mean(secs):.1f} s per query)",
              file=sys.stderr)
    return 0


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


def cmd_study(args: argparse.Namespace) -> int:
    from .study import markdown, run_study, save

    scorer = _scorer(args)
    plan = STUDY_PLAN_SMALL if "qwen" in scorer.model_name.lower() else STUDY_PLAN
    compare = {}
    for item in args.compare_heads:
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise SystemExit(f"qrhead: error: --compare-heads {item!r}: expected LABEL=PATH")
        if not Path(path).is_file():
            raise SystemExit(f"qrhead: error: --compare-heads {item!r}: no such file {path}")
        compare[label.strip()] = path.strip()
    report = run_study(scorer, _data_root(args), _cache(args) / "tokens", plan, min_detect=plan.get("min_detect", 32),
                       heads_dir=Path(args.heads_dir) if args.heads_dir else None, compare_heads=compare,
                       log=lambda s: print(s, file=sys.stderr))
    save(args.out, report)
    Path(args.out).with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}", file=sys.stderr)
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    from .masses import collect_masses
    from .rerank import detect_from_masses, format_table, load_rerank_data, run_rerank_experiment, save_result

    scorer = _scorer(args)
    cache = _cache(args)
    detection = None
    subsets = []
    if args.detect_data:
        n = args.detect_queries
        parts = []
        for i in range(args.detect_subsets):
            d = load_rerank_data(args.detect_data, args.detect_split, args.depth, n, args.seed, skip=i * n)
            m = collect_masses(scorer, d.items, args.detect_order, "reversed", args.seed, cache,
                               {"data": d.name, "depth": args.depth}, desc=f"detection subset {i + 1}")
            parts.append((d, m))
            if args.detect_subsets > 1:
                subsets.append(detect_from_masses(scorer, d, m, order=args.detect_order, placement="reversed",
                                                  seed=args.seed, name=f"qrhead-s{i + 1}", description=d.description))
        merged_items = [it for d, _ in parts for it in d.items]
        merged_qrels = {q: v for d, _ in parts for q, v in d.qrels.items()}
        merged_masses = {q: v for _, m in parts for q, v in m.items()}
        from .rerank import RerankData

        desc = (f"{parts[0][0].name} {args.detect_split}: {len(merged_items)} queries "
                f"({args.detect_subsets} x {n}, seed {args.seed}), BM25 top-{args.depth}, "
                f"{args.detect_order.replace('_', '-')} order")
        merged = RerankData(parts[0][0].name, merged_qrels, merged_items, desc)
        detection = detect_from_masses(scorer, merged, merged_masses, order=args.detect_order, placement="reversed",
                                       seed=args.seed, description=desc)
        out_heads = Path(args.out).with_suffix(".heads.json")
        if _main_process():
            out_heads.parent.mkdir(parents=True, exist_ok=True)
            detection.head_set.to_json(out_heads)
            print(f"detected {detection.head_set} -> {out_heads}", file=sys.stderr)
    data = load_rerank_data(args.data, args.split, args.depth, args.queries, args.seed, args.run,
                            bm25_scores=args.bm25_scores)
    sets = _head_sets(args, scorer, detection.head_set if detection else None)
    for s in subsets:
        sets[s.head_set.name] = s.head_set
    result = run_rerank_experiment(
        scorer, data, head_sets=sets, detection=detection, orders=args.orders, remedies=not args.no_remedies,
        random_seeds=args.random_seeds, dense=not args.no_dense, measures=args.measures, seed=args.seed,
        cache_root=cache,
    )
    if detection is not None:
        result.notes["position_prior"] = [round(float(v), 5) for v in detection.prior[: args.depth]]
        result.notes["detection"] = detection.head_set.info
    if subsets:
        heads = [set(s.head_set.heads) for s in subsets]
        result.notes["stability"] = {
            "subsets": [str(s.head_set) for s in subsets],
            "pairwise_overlap": [len(heads[i] & heads[j]) for i in range(len(heads)) for j in range(i + 1, len(heads))],
            "common_to_all": len(set.intersection(*heads)),
        }
    if not _main_process():  # under torchrun / accelerate launch every rank has the full result
        return 0
    save_result(result, args.out)
    methods = ["bm25", "dense", "all-heads", "random", "retrieval-heads", "qrhead", "qrhead-uncalibrated",
               "qrhead+rrf", "qrhead+linear", "qrhead-both", "qrhead-poscorr"] + [s.head_set.name for s in subsets]
    md = [f"# {scorer.model_name} on {data.description}", ""]
    for measure in args.measures:
        md.append(format_table(result, args.orders, methods, measure))
        md.append("")
    md.append("```json\n" + json.dumps({k: v for k, v in result.notes.items()}, indent=1, default=str) + "\n```")
    md.append(f"seconds: {json.dumps({k: round(v, 1) for k, v in result.seconds.items()})}")
    Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md[:2 + 2 * len(args.measures)]))
    return 0


def cmd_chunks(args: argparse.Namespace) -> int:
    from .chunks import run_chunk_experiment

    _single_process("chunks")
    scorer = _scorer(args)
    sets = _head_sets(args, scorer, None)
    report = run_chunk_experiment(scorer, args.data, sets, chunk_tokens=args.chunk_tokens,
                                  chunk_overlap=args.chunk_overlap, n_questions=args.questions, ks=args.ks,
                                  seed=args.seed, random_seeds=args.random_seeds, dense=not args.no_dense,
                                  cache_root=_cache(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=float))
    lines = [f"# {scorer.model_name}: chunk selection on {report['description']}", "",
             "| method | " + " | ".join(f"recall@{k}" for k in args.ks) + " |", "|---|" + "---|" * len(args.ks)]
    for m, vals in report["recall"].items():
        lines.append(f"| {m} | " + " | ".join(f"{np.mean(list(vals[str(k)].values())):.3f}" for k in args.ks) + " |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def cmd_needle(args: argparse.Namespace) -> int:
    from ..engine.heads import resolve_heads
    from ..engine.scoring import QRHeadScorer
    from .needle import detect_retrieval_heads, load_haystack, masked_accuracy, trial_grid

    _single_process("needle")
    scorer = QRHeadScorer.from_pretrained(args.model, "all", device=args.device, dtype=args.dtype)
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
