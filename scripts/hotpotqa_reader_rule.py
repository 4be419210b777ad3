"""Issue #28, item 3: how many paragraphs the default hands the reader (k) and in which order, chosen on
dev questions WITH answers by a rule written here and committed before the dev run that decides it (and
before any test figure of it).

    python scripts/hotpotqa_reader_rule.py dev --setting distractor   # reader answers on dev (resumable)
    python scripts/hotpotqa_reader_rule.py dev --setting haystack     # (the two can run at once)
    python scripts/hotpotqa_reader_rule.py choose                     # the rule -> docs/results/hotpotqa-reader.json
    python scripts/hotpotqa_reader_rule.py dev --setting distractor --reader 1.5b   # after `choose`: its check
    python scripts/hotpotqa_reader_rule.py test --setting distractor --reader 0.5b  # only if recommended

WHY: the first rule (scripts/hotpotqa_rules.py) chose k by supporting-paragraph recall alone (the smallest
k whose mean recall@k reaches 0.90: 7 of the 10 distractor paragraphs, 8 of the haystack's 50), because
the dev questions had no answers; the fusion-weight rule (scripts/hotpotqa_fusion_rule.py) found that the
weight is not the lever. At a k where every selector holds ~0.9 of the supporting paragraphs the selectors
hand the reader nearly the same paragraphs, so the heads' better early ranks cannot show, and a small
reader may read fewer paragraphs, or the best ones first, better. The dev questions' answers are public
(scripts/hotpotqa_dev_answers.py), so k and the order can now be chosen by what the reader answers.

RULE (fixed before the dev run)

Dev questions: the shared `hotpotqa-100` with its answers (scripts/hotpotqa_dev_answers.py: HippoRAG's
copy of the same 100 HotpotQA train questions; disjoint from the test sample and from the default's
detection data), both settings as the test runs build them: distractor (its 10 paragraphs) and haystack
(+40 paragraphs of other dev questions, seed 0). The default's ranking of each question's paragraphs is the
stored one of the fusion rule's dev run (docs/results/hotpotqa-fusion.dev.jsonl, field "default": the
harness's `qrhead-bm25` ranking, shipped fusion weight 0.5, scoring window 4096 on the haystack); no
scoring runs here.

Reader: Qwen2.5-Coder-0.5B-Instruct through the harness's Generator (LlamaIndex HuggingFaceLLM, greedy,
32 new tokens, the harness's answer prompt), each context made by the harness's `select_from_ranking`
from that ranking, as the `qrhead-bm25` selector makes it (no token budget, at most k paragraphs).

Candidates per setting: k in {2, 3, 4, K} (K = the current k: 7 distractor, 8 haystack) x order in
{"input" (the paragraphs kept in their input order: what the harness does now), "ranked" (best first)}.

Score: HotpotQA's official answer F1 per question; a candidate's score is its mean over the 100 questions,
per setting.

Choice per setting: (k*, o*) = the candidate with the highest mean F1; ties within 0.005 go to the larger
k, then to "input" (the current setting (K, input) wins its ties). (k*, o*) is RECOMMENDED for the setting
only if it is not (K, input) and the paired bootstrap 95% interval (10,000 resamples over questions, seed
0) of its per-question F1 minus (K, input)'s lies above 0. Otherwise the current setting stays, and the
docs say that no k or order beat it on dev.

The 1.5B reader (Qwen2.5-Coder-1.5B-Instruct): the choice is not made again. For a setting with a
recommendation only the recommended candidate and (K, input) are read on dev; the recommendation holds for
the 1.5B too only if its interval (as above) also lies above 0, else it is reported as the 0.5B's only.

Test (only for a recommended setting, each reader it holds for): the test sample read with that k and
order by BM25, the heads alone and the default (every selector at the same k and order; full context and
the oracle as in the main test runs), in files of their own beside the main runs'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from hotpotqa_rules import READERS, run_qrhead, test_command, write_choice  # noqa: E402  (the sibling script)

OUT = REPO / "docs" / "results" / "hotpotqa-reader"
RANKINGS = REPO / "docs" / "results" / "hotpotqa-fusion.dev.jsonl"
CURRENT_K = {"distractor": 7, "haystack": 8}
SMALL_KS = (2, 3, 4)
ORDERS = ("input", "ranked")
TIE = 0.005
QUESTIONS = 100
TEST_SELECTORS = ("bm25", "qrhead", "qrhead-bm25")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cell(k: int, order: str) -> str:
    return f"k={k},{order}"


def candidates(setting: str) -> list[str]:
    """The rule's candidates of a setting, the current one, (K, input), first."""
    top = CURRENT_K[setting]
    return [cell(top, "input"), cell(top, "ranked")] + [cell(k, o) for k in SMALL_KS for o in ORDERS]


def parse_cell(name: str) -> tuple[int, str]:
    k, order = name.split(",")
    return int(k.removeprefix("k=")), order


def dev_folder() -> Path:
    from hotpotqa_dev_answers import default_dir  # the sibling script (scripts/ is on the path above)

    return default_dir()


def stored_rankings() -> dict[tuple[str, str], dict[str, Any]]:
    """(setting, question id) -> the fusion rule's dev record (the default's ranking, gold, paragraphs)."""
    rows = [json.loads(line) for line in RANKINGS.read_text().splitlines() if line.strip()]
    return {(r["setting"], r["qid"]): r for r in rows}


def read_records(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(setting, question id, reader) -> its record; the last line of a key wins (a reread adds cells)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interrupted run
                    continue
                out[(r["setting"], r["qid"], r["reader"])] = r
    return out


def cells_for(setting: str, reader: str, decided: dict[str, Any] | None) -> list[str]:
    """What a reader reads on dev: every candidate (0.5B), or (1.5B) the recommended one and (K, input)."""
    if reader == "0.5b":
        return candidates(setting)
    rec = (decided or {}).get("settings", {}).get(setting, {}).get("recommended")
    return [cell(CURRENT_K[setting], "input"), rec] if rec else []


def cmd_dev(args: argparse.Namespace) -> None:
    from qrhead_integrations.chunks import select_from_ranking
    from qrhead_integrations.engine.loading import load_model
    from qrhead_integrations.eval.hotpotqa import answer_scores, hotpotqa_items
    from qrhead_integrations.eval.qa import Generator, clock, file_lock, ranking

    folder = dev_folder()
    if not (folder / "answers.jsonl").is_file():
        raise SystemExit(f"no dev answers in {folder}: run scripts/hotpotqa_dev_answers.py first")
    decided = json.loads(OUT.with_suffix(".json").read_text()) if OUT.with_suffix(".json").is_file() else None
    if args.reader != "0.5b" and decided is None:
        raise SystemExit("the 1.5B reader checks the 0.5B's choice: run `dev` (0.5B) and `choose` first")
    path = Path(args.jsonl) if args.jsonl else OUT.with_suffix(".dev.jsonl")
    done = read_records(path)
    stored = stored_rankings()
    name = READERS[args.reader][0]
    loaded = load_model(name)
    gen = Generator(loaded.model, loaded.tokenizer, loaded.name)
    settings = [args.setting] if args.setting else list(CURRENT_K)
    with path.open("a", encoding="utf-8") as f:
        for setting in settings:
            want = cells_for(setting, args.reader, decided)
            if not want:
                log(f"{setting}: nothing recommended, nothing for the {args.reader} reader to read")
                continue
            items = hotpotqa_items(folder, setting=setting, limit=args.limit)
            for it in items:
                key = (setting, it.id, args.reader)
                rec = done.get(key) or {"setting": setting, "qid": it.id, "reader": args.reader,
                                        "generator": loaded.name, "answer": it.answers[0], "cells": {}}
                todo = [c for c in want if c not in rec["cells"]]
                if not todo:
                    continue
                ranked_ids = stored[(setting, it.id)]
                if ranked_ids["gold"] != it.gold or ranked_ids["paragraphs"] != len(it.chunks):
                    raise SystemExit(f"{setting} {it.id}: the stored ranking is not of these paragraphs")
                texts = [c.text for c in it.chunks]
                # the stored order as ranking results (scores only order them: best first)
                n = len(texts)
                scores = [0.0] * n
                for pos, i in enumerate(ranked_ids["default"]):
                    scores[i] = float(n - pos)
                ranked = ranking(scores, texts)
                for c in todo:
                    k, order = parse_cell(c)
                    sel = select_from_ranking(it.question, it.chunks, ranked, token_budget=None, top_k=k,
                                              keep_document_order=order == "input", count_tokens=gen.count_tokens)
                    t = clock()
                    output = gen.answer(sel.text(), it.question)
                    rec["cells"][c] = {"chunks": [s.index for s in sel], "tokens": sel.tokens, "output": output,
                                       **answer_scores(output, it.answers[0]), "gen_s": round(clock() - t, 3)}
                with file_lock(f):
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    f.flush()
                done[key] = rec
            log(f"{setting} ({args.reader}): done")
    log(f"wrote {path}")


def decide(f1: dict[str, dict[str, float]], setting: str) -> dict[str, Any]:
    """The rule on one setting's per-question F1 (candidate -> question id -> F1)."""
    from qrhead_integrations.eval.metrics import paired_bootstrap

    current = cell(CURRENT_K[setting], "input")
    mean = {c: float(np.mean(list(f1[c].values()))) for c in candidates(setting)}
    best = max(mean.values())
    tied = [c for c in candidates(setting) if mean[c] >= best - TIE]
    chosen = max(tied, key=lambda c: (parse_cell(c)[0], parse_cell(c)[1] == "input"))
    diff = paired_bootstrap(f1[chosen], f1[current]) if chosen != current else None
    recommended = chosen if diff is not None and diff.low > 0 else None
    return {"mean F1": mean, "best": chosen, "current": current,
            "best minus current": None if diff is None else vars(diff), "recommended": recommended}


def per_question(records: dict[tuple[str, str, str], dict[str, Any]], setting: str, reader: str,
                 cells: list[str]) -> dict[str, dict[str, float]]:
    """candidate -> question id -> F1, over the questions that have every one of ``cells``."""
    rows = [r for (s, _, rd), r in records.items() if s == setting and rd == reader
            and all(c in r["cells"] for c in cells)]
    return {c: {r["qid"]: r["cells"][c]["f1"] for r in rows} for c in cells}


def evidence(records: dict[tuple[str, str, str], dict[str, Any]], setting: str, cells: list[str]
             ) -> dict[str, dict[str, float | None]]:
    """Reported beside the choice (it decides nothing): per candidate, the share of questions whose context
    holds both supporting paragraphs, and the mean F1 where it does and where it does not (the 0.5B)."""
    gold = {qid: set(r["gold"]) for (s, qid), r in stored_rankings().items() if s == setting}
    rows = [r for (s, _, rd), r in records.items() if s == setting and rd == "0.5b"
            and all(c in r["cells"] for c in cells)]
    held: dict[str, float] = {}
    f1_held: dict[str, float | None] = {}
    f1_not: dict[str, float | None] = {}
    for c in cells:
        both = [gold[r["qid"]] <= set(r["cells"][c]["chunks"]) for r in rows]
        held[c] = float(np.mean(both))
        yes = [r["cells"][c]["f1"] for r, b in zip(rows, both) if b]
        no = [r["cells"][c]["f1"] for r, b in zip(rows, both) if not b]
        f1_held[c] = float(np.mean(yes)) if yes else None
        f1_not[c] = float(np.mean(no)) if no else None
    cpu = float(np.mean([sum(r["cells"][c].get("gen_s", 0.0) for c in cells) for r in rows]))
    return {"holds both supporting": held, "mean F1 where both held": f1_held, "mean F1 where not": f1_not,
            "read CPU s per question (every candidate)": cpu}


def cmd_choose(args: argparse.Namespace) -> None:
    from qrhead_integrations.eval.metrics import paired_bootstrap

    records = read_records(OUT.with_suffix(".dev.jsonl"))
    out: dict[str, Any] = {"rule": "scripts/hotpotqa_reader_rule.py docstring", "reader": READERS["0.5b"][0],
                           "settings": {}}
    for setting in CURRENT_K:
        f1 = per_question(records, setting, "0.5b", candidates(setting))
        n = len(next(iter(f1.values())))
        if n < QUESTIONS and not args.partial:
            raise SystemExit(f"{setting}: every candidate read for {n} of {QUESTIONS} dev questions; run `dev` "
                             "to the end")
        res = {"questions": n, **decide(f1, setting), **evidence(records, setting, candidates(setting))}
        rec = res["recommended"]
        if rec:  # the 1.5B's check, when it has been read
            check = per_question(records, setting, "1.5b", [res["current"], rec])
            m = len(check[rec])
            if m:
                d = paired_bootstrap(check[rec], check[res["current"]])
                res["1.5b"] = {"questions": m, "mean F1": {c: float(np.mean(list(v.values()))) for c, v in
                                                           check.items()},
                               "recommended minus current": vars(d),
                               "holds": bool(d.low > 0) if m >= QUESTIONS else None}
        out["settings"][setting] = res
    write_choice(OUT.with_suffix(".json"), out, args.partial)


def cmd_test(args: argparse.Namespace) -> None:
    """The test run of a recommended k and order (only where the rule recommended one, and for the 1.5B
    only where its dev check holds): BM25, the heads alone and the default at that k and order."""
    from hotpotqa_rules import OUT as RULES

    res = json.loads(OUT.with_suffix(".json").read_text())["settings"][args.setting]
    rec = res["recommended"]
    if rec is None:
        raise SystemExit(f"{args.setting}: nothing was recommended on dev ({res['current']} stays): nothing to test")
    if args.reader != "0.5b" and not (res.get("1.5b") or {}).get("holds"):
        raise SystemExit(f"{args.setting}: the recommendation has not held for the {args.reader} reader on dev "
                         "(read its check with `dev --reader 1.5b`, then `choose`): nothing to test")
    k, order = parse_cell(rec)
    chosen = dict(json.loads(RULES.with_suffix(".json").read_text())["chosen"], **{f"k_{args.setting}": k})
    argv = test_command(args.setting, args.reader, chosen, selectors=TEST_SELECTORS,
                        options=("--context-order", order), suffix=f"-k{k}-{order}", shard=args.shard)
    run_qrhead(argv, args.dry_run)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("dev", "choose", "test"))
    p.add_argument("--setting", choices=tuple(CURRENT_K), help="dev: one setting only (default: both); test: which")
    p.add_argument("--reader", choices=tuple(READERS), default="0.5b", help="dev: which reader")
    p.add_argument("--limit", type=int, default=None, help="dev: at most this many questions per setting")
    p.add_argument("--jsonl", default=None, help="dev: another records file (default: the rule's)")
    p.add_argument("--partial", action="store_true", help="choose: print the figures so far, decide nothing")
    p.add_argument("--shard", default=None, metavar="I/N", help="test: the I-th of N shards (run all N at once)")
    p.add_argument("--dry-run", action="store_true", help="test: print the command only")
    args = p.parse_args(argv)
    if args.step == "test" and not args.setting:
        p.error("test needs --setting")
    {"dev": cmd_dev, "choose": cmd_choose, "test": cmd_test}[args.step](args)


if __name__ == "__main__":
    main()
