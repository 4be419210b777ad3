"""Issue #28: the paragraph budget k and the haystack's window size, chosen on dev questions by a rule
written here and committed before the runs that decide it and before any test run.

    python scripts/hotpotqa_rules.py dev      # dev rankings (selection only, resumable JSONL)
    python scripts/hotpotqa_rules.py choose   # apply the rule -> docs/results/hotpotqa-rules.json
    python scripts/hotpotqa_rules.py test --setting distractor --reader 0.5b   # a test run, chosen k and W
    python scripts/hotpotqa_rules.py test --setting haystack --reader 1.5b --shard 1/2  # and 2/2 beside it

RULE (fixed before the dev run)

Dev questions: the shared `hotpotqa-100` (100 HotpotQA train questions, 10 paragraphs each, the 2
supporting paragraphs as qrels, no answers). They are disjoint from the test questions (the converted
public sample, 100 dev-set "hard" questions: no id in common, checked by `dev`) and from the shipped
default's detection data (SciFact train, NQ-open). Selection only: the rule reads supporting-paragraph
recall, which needs no answers, so no reader runs on dev.

The selector the rule reads: the shipped default as `qrhead eval qa` runs it (`qrhead-bm25`: the embedded
SmolLM2-135M default, fused with BM25 over the paragraphs, `--candidate-order ranked`), through the
harness's own `source_ranking`. Paragraphs are rendered as the harness renders them ("(Title: t) text").

1. Window (haystack setting only; its prompts are ~7K tokens, some over SmolLM2's 8,192): the scorer's
   `max_context_tokens` W in {2048, 4096, 8192}. For each W, the mean recall@4 (share of the 2 supporting
   paragraphs among the top 4) over the first 40 dev questions in the haystack setting (seed 0). The W
   with the highest mean is chosen; a W within 0.01 of the best counts as tied, and among tied ones the
   largest W wins (fewest windows: the library's default behaviour).
2. k, per setting: for k in 2..8, the mean recall@k of the same selector (distractor: all 100 dev
   questions; haystack: the 40, with the chosen W). k is the smallest k whose mean recall@k is at least
   0.90 (both supporting paragraphs are needed for most bridge answers, and a small reader reads fewer
   paragraphs better); if no k reaches it, 8.

The test runs then use that k (`--k`) and W (`--max-context-tokens`) for every selector (full context,
oracle, BM25, dense MiniLM, heads alone, the default, the reader's own weights), both readers
(Qwen2.5-Coder-0.5B and 1.5B), `--candidate-order ranked`, on the converted sample's 100 questions.
Heads alone and BM25 rankings are stored beside the default's on dev and reported; they choose nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "hotpotqa-100"
OUT = REPO / "docs" / "results" / "hotpotqa-rules"
WINDOWS = (2048, 4096, 8192)
KS = tuple(range(2, 9))
HAYSTACK_DEV = 40
RECALL_TARGET = 0.90
TIE = 0.01
SOURCES = ("qrhead-bm25", "qrhead", "bm25")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def recall_at(ranked: list[int], gold: list[int], k: int) -> float:
    return len(set(ranked[:k]) & set(gold)) / len(gold) if gold else 0.0


def _jobs() -> list[tuple[str, int | None]]:
    return [("distractor", None)] + [("haystack", w) for w in WINDOWS]


def cmd_dev(args: argparse.Namespace) -> None:
    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.eval.hotpotqa import default_dir, hotpotqa_items, read_hotpotqa
    from qrhead_integrations.eval.qa import GroupState, Scorers, source_ranking

    test = default_dir()
    if (test / "queries.jsonl").is_file():
        common = {q.id for q in read_hotpotqa(DEV, answers_required=False)} & {q.id for q in read_hotpotqa(test)}
        if common:
            raise SystemExit(f"dev and test questions overlap: {sorted(common)[:5]}")
        log("dev and test questions: disjoint")
    path = OUT.with_suffix(".dev.jsonl")
    done = set()
    if path.exists():
        done = {(r["setting"], r["window"], r["qid"]) for r in map(json.loads, path.read_text().splitlines())}
    base = QRHeadScorer.from_pretrained(device="cpu", candidate_order="ranked", first_stage=None)
    log(f"scorer: {base!r}")
    with path.open("a") as f:
        for setting, window in _jobs():
            items = hotpotqa_items(DEV, setting=setting, answers_required=False,
                                   limit=HAYSTACK_DEV if setting == "haystack" else None)
            scorer = base.with_options(max_context_tokens=window) if window else base
            scorers = Scorers(smol=scorer)
            for it in items:
                if (setting, window, it.id) in done:
                    continue
                state = GroupState()
                rec: dict[str, Any] = {"setting": setting, "window": window, "qid": it.id, "gold": it.gold,
                                       "paragraphs": len(it.chunks)}
                for source in SOURCES:
                    if setting == "haystack" and window != WINDOWS[-1] and source == "bm25":
                        continue  # BM25 does not depend on the window
                    t0 = time.perf_counter()
                    ranked, _ = source_ranking(source, it, scorers, state, [it.question])
                    rec[source] = [r.index for r in ranked]
                    rec[f"{source}_seconds"] = time.perf_counter() - t0
                f.write(json.dumps(rec) + "\n")
                f.flush()
            log(f"{setting} window={window}: done")
    log(f"wrote {path.relative_to(REPO)}")


def cmd_choose(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in OUT.with_suffix(".dev.jsonl").read_text().splitlines()]

    def mean_recall(setting: str, window: int | None, source: str, k: int) -> float:
        rs = [recall_at(r[source], r["gold"], k) for r in rows
              if r["setting"] == setting and r["window"] == window and source in r]
        return float(np.mean(rs)) if rs else float("nan")

    counts = {w: sum(r["setting"] == "haystack" and r["window"] == w for r in rows) for w in WINDOWS}
    if sum(r["setting"] == "distractor" for r in rows) < 100:
        raise SystemExit("the distractor dev rankings are incomplete: run `dev` first")
    r4 = {w: mean_recall("haystack", w, "qrhead-bm25", 4) for w in WINDOWS}
    chosen: dict[str, Any] = {"window": None, "k_haystack": None}
    settings: list[tuple[str, int | None]] = [("distractor", None)]
    if all(n >= HAYSTACK_DEV for n in counts.values()):  # the window needs every window's 40 questions
        best = max(r4.values())
        chosen["window"] = max(w for w, v in r4.items() if v >= best - TIE)
        settings.append(("haystack", chosen["window"]))
    else:
        r4 = {w: None for w in WINDOWS}
        log(f"haystack dev rankings incomplete ({counts}): window and k_haystack pending")
    window = chosen["window"]
    table: dict[str, Any] = {}
    for setting, w in settings:
        curve = {k: mean_recall(setting, w, "qrhead-bm25", k) for k in KS}
        chosen[f"k_{setting}"] = next((k for k in KS if curve[k] >= RECALL_TARGET), KS[-1])
        table[setting] = {source: {k: mean_recall(setting, w if source != "bm25" or setting == "distractor"
                                                   else WINDOWS[-1], source, k) for k in KS}
                          for source in SOURCES}
    out = {"rule": "scripts/hotpotqa_rules.py docstring", "recall@4 by window (haystack, default)": r4,
           "chosen": chosen, "recall@k": table,
           "questions": {"distractor": sum(r["setting"] == "distractor" for r in rows),
                         "haystack": sum(r["setting"] == "haystack" and r["window"] == window for r in rows)}}
    OUT.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"recall@4 by window": r4, "chosen": chosen}, indent=1))


READERS = {"0.5b": ("qwen2.5-coder-0.5b-instruct", "qwen05"), "1.5b": ("qwen2.5-coder-1.5b-instruct", "qwen15")}
TEST_SELECTORS = ("full", "oracle", "bm25", "dense", "qrhead", "qrhead-bm25", "qrhead-gen")


def test_command(setting: str, reader: str, chosen: dict[str, Any], *, selectors: Sequence[str] = TEST_SELECTORS,
                 options: Sequence[str] = (), suffix: str = "", shard: str | None = None) -> list[str]:
    """The `qrhead eval qa` arguments of one test run, with the k (and, for the haystack, the window) the
    rule chose; per-question records in docs/results/qa-hotpot-<setting>-<reader><suffix>.jsonl (reruns
    resume). ``options``: more scoring options (a later rule's, e.g. a fusion weight); ``shard``: ``I/N``,
    this process's share of the questions (the N shards run at once, writing the same records)."""
    k = chosen.get(f"k_{setting}")
    if k is None:
        raise SystemExit(f"no k chosen for {setting} yet: finish `dev`, then `choose`")
    generator, tag = READERS[reader]
    stem = OUT.parent / f"qa-hotpot-{setting}-{tag}{suffix}"
    window = ["--max-context-tokens", str(chosen["window"])] if setting == "haystack" else []
    return ["eval", "qa", "--task", "hotpotqa", "--setting", setting, "--k", str(k), *window,
            "--generator", generator, "--candidate-order", "ranked", *options, "--selectors", *selectors,
            "--jsonl", str(stem.with_suffix(".jsonl").relative_to(REPO)),
            "--out", str(stem.with_suffix(".json").relative_to(REPO)), *(["--shard", shard] if shard else [])]


def run_qrhead(argv: Sequence[str], dry_run: bool = False) -> None:
    """Show a `qrhead` command line, and run it unless ``dry_run`` (exits with its status)."""
    from qrhead_integrations.cli import main as qrhead

    log("qrhead " + " ".join(argv))
    if not dry_run:
        raise SystemExit(qrhead(list(argv)))


def write_choice(path: Path, out: dict[str, Any], partial: bool = False) -> None:
    """Print a rule's reading; write it to ``path`` unless ``partial`` (figures so far: nothing decided)."""
    if partial:
        out["partial"] = True
    else:
        path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def cmd_test(args: argparse.Namespace) -> None:
    chosen = json.loads(OUT.with_suffix(".json").read_text())["chosen"]
    run_qrhead(test_command(args.setting, args.reader, chosen, shard=args.shard), args.dry_run)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("dev", "choose", "test"))
    p.add_argument("--setting", choices=("distractor", "haystack"), help="test: which setting")
    p.add_argument("--reader", choices=tuple(READERS), help="test: which reader")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="test: run the I-th of N shards of the questions (run all N at once; same records file)")
    p.add_argument("--dry-run", action="store_true", help="test: print the command only")
    args = p.parse_args(argv)
    if args.step == "test" and not (args.setting and args.reader):
        p.error("test needs --setting and --reader")
    {"dev": cmd_dev, "choose": cmd_choose, "test": cmd_test}[args.step](args)


if __name__ == "__main__":
    main()
