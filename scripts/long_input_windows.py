"""Do smaller prompt windows help the heads on inputs near the model's context length? Measured on
detection questions, so that nothing is chosen on an evaluation set.

    python scripts/long_input_windows.py --questions 32 --windows none 4096 2048 --out docs/results/nq50-windows-detection.json

Why: with 50 NQ passages (6.6-7.4K SmolLM2 tokens, one prompt near the 135M model's 8K context) the
embedded default's heads alone found the gold passage far less often than with 20 (evidence recall 0.61
vs 0.96 in ``qrhead eval qa --task nq --depth 50``, docs/results/qa-nq50-qwen05.md). The engine can split
any input into windows (``max_context_tokens``; scores stay comparable across windows). Whether that
helps is measured here on NQ-open questions 0..N-1 of the seeded order, the questions the embedded head set
was detected on (``nq_multidoc``: the gold passage among BM25 distractors from other questions' passages),
never on the QA evaluation questions (``--skip 1000``). The passages are handed over in a seeded shuffled
order (the study's permutation), so the gold passage sits anywhere in the prompt, as in the QA benchmark.
Each window setting scores the same passages in the same order with the shipped default otherwise
unchanged; the heads alone and the default fusion with BM25 over the 50 passages (what ``select_chunks``
does by default) are both reported.

Rule, fixed before the first result: a window setting is reported as helping only if its R@1 beats the
whole-context prompt with a paired 95% bootstrap interval above 0, for the heads alone and without
hurting the fused default (fused R@1 difference's interval not below 0). This script changes no default:
a helping setting would be a recommendation to confirm on the evaluation set.

Per-question results go to a JSONL file under the user cache as they are computed; a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.detection import DetectionExample
from qrhead_integrations.engine.fusion import fuse
from qrhead_integrations.engine.loading import cache_root
from qrhead_integrations.eval.data import shared_data_dir
from qrhead_integrations.eval.first_stage import doc_text
from qrhead_integrations.eval.masses import shuffle_permutation
from qrhead_integrations.eval.metrics import paired_bootstrap
from qrhead_integrations.eval.sets import nq_multidoc
from qrhead_integrations.first_stage import BM25


def _setting(value: str) -> int | None:
    return None if value == "none" else int(value)


def _rank_of_gold(scores: np.ndarray, gold: int) -> int:
    """1-based rank of the gold passage (ties broken by input position, as the scorer does)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return order.index(gold) + 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=32, help="NQ-open detection questions 0..N-1 (seeded order)")
    p.add_argument("--depth", type=int, default=50, help="passages per question (the gold one + distractors)")
    p.add_argument("--windows", nargs="+", default=["none", "4096", "2048"],
                   help="max_context_tokens settings; 'none' = the model's context (the default)")
    p.add_argument("--out", default="docs/results/nq50-windows-detection.json")
    p.add_argument("--data", default=None)
    args = p.parse_args()

    root = Path(args.data) if args.data else shared_data_dir()
    data = nq_multidoc(root / "nq-open-oracle", n=args.questions, skip=0, seed=0, depth=args.depth)
    examples = []
    for it in data.items:
        perm = shuffle_permutation(it.qid, len(it.doc_ids), 0)
        gold = [perm.index(i) for i, d in enumerate(it.doc_ids) if data.qrels[it.qid].get(d)]
        examples.append(DetectionExample(it.query, tuple(it.passages[i] for i in perm), frozenset(gold), it.qid))
    desc = data.description.replace(", BM25 order", ", handed over in a seeded shuffled order")
    settings = [_setting(w) for w in args.windows]
    scorers = {w: QRHeadScorer.from_pretrained(max_context_tokens=w) for w in settings}
    opts = next(iter(scorers.values())).effective_options
    name = next(iter(scorers.values())).model_name.replace("/", "__")
    log = cache_root() / "eval" / "long-input-windows" / f"nq{args.depth}-detection-{name}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[str, str], dict] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            done[(rec["qid"], str(rec["window"]))] = rec
    from tqdm.auto import tqdm

    bm25: dict[str, list[float]] = {}
    for ex in tqdm(examples, desc="questions"):
        texts = [doc_text(x) for x in ex.passages]
        bm25[ex.qid] = BM25.over(texts).scores(ex.query)
        gold = next(iter(ex.gold))
        for w, scorer in scorers.items():
            if (ex.qid, str(w)) in done:
                continue
            t, wall = time.process_time(), time.time()
            enc = scorer.encode(list(ex.passages), queries=[ex.query], keep_cache=False)
            alone = np.asarray(enc.score(ex.query))
            fused = np.asarray(fuse(alone, bm25[ex.qid], opts.fusion, opts.fusion_weight))
            rec = {"qid": ex.qid, "window": str(w), "gold": gold, "windows": len(enc.layout.windows),
                   "tokens": sum(scorer.count_tokens(x) for x in texts),
                   "rank_alone": _rank_of_gold(alone, gold), "rank_fused": _rank_of_gold(fused, gold),
                   "cpu_s": time.process_time() - t, "wall_s": time.time() - wall,
                   "threads": torch.get_num_threads()}
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            done[(ex.qid, str(w))] = rec

    qids = [ex.qid for ex in examples]
    gold_rank_bm25 = {ex.qid: _rank_of_gold(np.asarray(bm25[ex.qid]), next(iter(ex.gold))) for ex in examples}
    per: dict[str, dict[str, dict[str, float]]] = {"BM25": {
        "R@1": {q: float(gold_rank_bm25[q] == 1) for q in qids},
        "R@5": {q: float(gold_rank_bm25[q] <= 5) for q in qids},
        "RR": {q: 1.0 / gold_rank_bm25[q] for q in qids}}}
    for w in settings:
        for kind in ("alone", "fused"):
            label = f"{'heads alone' if kind == 'alone' else 'default (fused with BM25)'}, window {w or 'whole'}"
            ranks = {q: done[(q, str(w))][f"rank_{kind}"] for q in qids}
            per[label] = {"R@1": {q: float(r == 1) for q, r in ranks.items()},
                          "R@5": {q: float(r <= 5) for q, r in ranks.items()},
                          "RR": {q: 1.0 / r for q, r in ranks.items()}}
    table = {n: {m: float(np.mean(list(v.values()))) for m, v in pm.items()} for n, pm in per.items()}
    comparisons = {}
    base = settings[0]
    for w in settings[1:]:
        for kind in ("heads alone", "default (fused with BM25)"):
            a, b = f"{kind}, window {w or 'whole'}", f"{kind}, window {base or 'whole'}"
            for m in ("R@1", "RR"):
                d = paired_bootstrap(per[a][m], per[b][m])
                comparisons[f"{a} - {b} ({m})"] = {"mean": d.mean, "low": d.low, "high": d.high, "n": d.n}
    recs = {w: [done[(q, str(w))] for q in qids] for w in settings}
    cmd = (f"python scripts/long_input_windows.py --questions {args.questions} --depth {args.depth} "
           f"--windows {' '.join(args.windows)} --out {args.out}")
    report = {"questions": len(qids), "set": desc, "table": table, "comparisons": comparisons,
              "cost": {str(w or "whole"): {"windows_mean": float(np.mean([r["windows"] for r in rs])),
                                "cpu_s_mean": float(np.mean([r["cpu_s"] for r in rs])),
                                "threads": sorted({r["threads"] for r in rs})} for w, rs in recs.items()},
              "tokens_mean": float(np.mean([r["tokens"] for r in recs[base]])),
              "fusion": {"method": opts.fusion, "weight": opts.fusion_weight}, "command": cmd}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Prompt windows on {args.depth} NQ passages (detection questions, {len(qids)})", "", f"`{cmd}`", "",
             desc + f"; {report['tokens_mean']:.0f} passage tokens per question on average.", "",
             "| method | R@1 | R@5 | MRR |", "|---|---|---|---|"]
    lines += [f"| {n} | {v['R@1']:.3f} | {v['R@5']:.3f} | {v['RR']:.3f} |" for n, v in table.items()]
    lines += ["", "Paired bootstrap (10,000 resamples, 95% interval):", ""]
    lines += [f"- {k}: {v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" for k, v in comparisons.items()]
    lines += [""] + [f"- window {w}: {c['windows_mean']:.1f} prompts per question, {c['cpu_s_mean']:.0f} CPU s "
                     f"(torch threads {', '.join(map(str, c['threads']))})" for w, c in report["cost"].items()]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
