"""``qrhead eval``: re-ranking and chunk selection on your data with every baseline, and end-to-end QA.

The quality study and the needle test are research code outside the package (``research/``, run from a
checkout: ``python -m research collect|study|needle``); they reuse the helpers here (:func:`add_common_args`,
:func:`scorer_from_args`, :func:`cache_dir`, :func:`single_process`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..cli_options import add_load_args, load_from_args


def add_eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate on your data: re-ranking (BEIR layout), chunk selection, end-to-end QA")
    esub = p.add_subparsers(dest="eval_command", required=True)

    r = esub.add_parser("rerank", help="re-rank first-stage candidates of a BEIR-layout data set")
    add_common_args(r)
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

    c = esub.add_parser("chunks", help="select chunks of long documents (documents.jsonl + questions.jsonl "
                                           "with evidence spans, e.g. SQuAD articles)")
    add_common_args(c)
    c.add_argument("--data", required=True, help="long-context folder (documents.jsonl + questions.jsonl)")
    c.add_argument("--chunk-tokens", type=int, default=128, help="chunk size in tokens (LlamaIndex SentenceSplitter)")
    c.add_argument("--chunk-overlap", type=int, default=0)
    c.add_argument("--questions", type=int, default=None, help="seeded subset of questions (default: all)")
    c.add_argument("--ks", nargs="+", type=int, default=[1, 3, 5])
    c.add_argument("--random-seeds", type=int, default=5)
    c.add_argument("--no-dense", action="store_true")
    c.set_defaults(func=cmd_chunks)

    from .qa import add_qa_parser  # `qrhead eval qa`: end-to-end long-context QA (qa.py)

    add_qa_parser(esub)


def add_common_args(p: argparse.ArgumentParser, out: bool = True) -> None:
    """The flags every evaluation command shares (model, head sets, device, passage budget, seed, cache)."""
    add_load_args(p)  # --model, --device, --device-map, --dtype, ... (LoadOptions)
    p.add_argument("--heads", default=None, help="QRHead set under test (default: detected here, else registered)")
    p.add_argument("--retrieval-heads", default="retrieval",
                   help="copy-paste retrieval heads: registered variant name or JSON file ('none' to skip)")
    p.add_argument("--max-passage-tokens", type=int, default=128)
    p.add_argument("--max-context-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="folder for cached per-head masses (default: user cache)")
    if out:
        p.add_argument("--out", required=True, help="JSON result file (a Markdown report is written beside it)")


def _main_process() -> bool:
    from ..engine import parallel

    return parallel.is_main_process()


def single_process(command: str) -> None:
    """Refuse to run ``command`` (e.g. ``"qrhead eval chunks"``) under torchrun / accelerate launch."""
    from ..engine import parallel

    if parallel.is_distributed():
        raise SystemExit(f"{command} runs in one process (only `qrhead eval rerank` and `qrhead detect` are "
                         "data-parallel); start it without torchrun / accelerate launch")


def scorer_from_args(args: argparse.Namespace):
    """A scorer capturing every head (any head set is evaluated from its masses), from :func:`add_common_args`."""
    from ..engine.scoring import QRHeadScorer

    return QRHeadScorer.from_pretrained(heads="all", **load_from_args(args), max_passage_tokens=args.max_passage_tokens,
                                        max_context_tokens=args.max_context_tokens)


def cache_dir(args: argparse.Namespace) -> Path:
    """``--cache``, else the user cache's ``eval`` folder (cached per-head masses, the study's store)."""
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


def cmd_rerank(args: argparse.Namespace) -> int:
    from .masses import collect_masses
    from .rerank import detect_from_masses, format_table, load_rerank_data, run_rerank_experiment, save_result

    scorer = scorer_from_args(args)
    cache = cache_dir(args)
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

    single_process("qrhead eval chunks")
    scorer = scorer_from_args(args)
    sets = _head_sets(args, scorer, None)
    report = run_chunk_experiment(scorer, args.data, sets, chunk_tokens=args.chunk_tokens,
                                  chunk_overlap=args.chunk_overlap, n_questions=args.questions, ks=args.ks,
                                  seed=args.seed, random_seeds=args.random_seeds, dense=not args.no_dense,
                                  cache_root=cache_dir(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=float))
    lines = [f"# {scorer.model_name}: chunk selection on {report['description']}", "",
             "| method | " + " | ".join(f"recall@{k}" for k in args.ks) + " |", "|---|" + "---|" * len(args.ks)]
    for m, vals in report["recall"].items():
        lines.append(f"| {m} | " + " | ".join(f"{np.mean(list(vals[str(k)].values())):.3f}" for k in args.ks) + " |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0

