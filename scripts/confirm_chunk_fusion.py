"""Confirm (or not) on fresh SQuAD questions that fusing the heads with BM25 over the chunks selects better
chunks than the heads alone — the decision the quality study left open (docs/quality.md, "Chunks").

    python scripts/confirm_chunk_fusion.py --out docs/results/chunk-fusion-confirm.json

Questions: SQuAD articles 4-22 (all the others of 20-40K characters) of `qrhead eval qa --task squad`'s seeded
article order (articles 1-3 are the end-to-end run's), 5 seeded questions each, minus any of the quality
study's 40 SQuAD questions: none of them was looked at before (except the 4 of article 4, seen in a smoke run
of this script). Chunks: LlamaIndex SentenceSplitter, 256 scorer tokens, document order (the study's
chunking); gold: the chunks of the answer's paragraph that hold an answer string. Methods, all through the
public API on one encoding per article (`scorer.encode(chunks, queries=...)`): BM25 (`bm25s`), the default
scorer's heads alone (`enc.rank(q)`), and the heads fused with the BM25 scores as the first stage
(`enc.rank(q, first_stage_scores=bm25)`: the head set's recommended fusion, fitted on detection data).

Decision rule, fixed before the run: the chunk selectors' default becomes "fused with BM25 over the chunks"
if fused R@1 beats the heads alone with a paired 95% bootstrap interval above 0 on these questions;
otherwise the default stays the heads alone. Per-question rows go to a JSONL beside --out (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qrhead_integrations.engine.scoring import QRHeadScorer
from qrhead_integrations.eval.chunks import squad_chunk_items
from qrhead_integrations.eval.first_stage import BM25
from qrhead_integrations.eval.metrics import paired_bootstrap
from qrhead_integrations.eval.qa import squad_items

KS = (1, 3, 5)


def hits(order: list[int], gold: set[int]) -> dict[str, float]:
    return {f"R@{k}": float(bool(set(order[:k]) & gold)) for k in KS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--articles", type=int, default=22, help="articles of the seeded order read (the first 3 skipped; 22 = all of 20-40K characters)")
    ap.add_argument("--per-article", type=int, default=5)
    ap.add_argument("--chunk-tokens", type=int, default=256)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    root = Path(args.data) / "squad-articles"
    scorer = QRHeadScorer.from_pretrained(None, candidate_order="as_given")
    study_ids = {q["id"] for a in squad_chunk_items(scorer, root, chunk_tokens=256, n_questions=40)
                 for q in a["questions"]}
    items = squad_items(root, scorer.tokenizer, articles=args.articles, per_article=args.per_article,
                        chunk_tokens=args.chunk_tokens)
    first_three = list(dict.fromkeys(it.group for it in items))[:3]
    items = [it for it in items if it.group not in first_three and it.id not in study_ids and it.gold]
    jsonl = Path(args.out).with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if jsonl.is_file():
        done = {r["id"]: r for r in map(json.loads, jsonl.read_text().splitlines()) if r}
    groups: dict[str, list] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    with open(jsonl, "a", encoding="utf-8") as f:
        for gi, (group, its) in enumerate(groups.items()):
            todo = [it for it in its if it.id not in done]
            if not todo:
                continue
            texts = [c.text for c in todo[0].chunks]
            print(f"article {gi + 1}/{len(groups)} ({len(texts)} chunks, {len(todo)} questions)", file=sys.stderr)
            bm25 = BM25.over(texts)
            enc = scorer.encode(texts, queries=[it.question for it in todo])
            for it in todo:
                first_stage = bm25.scores(it.question)
                bm25_order = sorted(range(len(texts)), key=lambda i: (-first_stage[i], i))
                alone = [r.index for r in enc.rank(it.question)]
                fused = [r.index for r in enc.rank(it.question, first_stage_scores=first_stage)]
                gold = set(it.gold)
                row = {"id": it.id, "group": group, "n_chunks": len(texts), "gold": sorted(gold),
                       "bm25": hits(bm25_order, gold), "heads": hits(alone, gold), "fused": hits(fused, gold)}
                f.write(json.dumps(row) + "\n")
                f.flush()
                done[it.id] = row
    rows = [done[it.id] for it in items if it.id in done]
    summary: dict[str, dict[str, object]] = {}
    for k in KS:
        m = f"R@{k}"
        per = {name: {r["id"]: r[name][m] for r in rows} for name in ("bm25", "heads", "fused")}
        summary[m] = {name: sum(v.values()) / len(v) for name, v in per.items()}
        for a, b in (("fused", "heads"), ("fused", "bm25"), ("heads", "bm25")):
            d = paired_bootstrap(per[a], per[b])
            summary[m][f"{a} - {b}"] = {"mean": d.mean, "low": d.low, "high": d.high}
    d1 = summary["R@1"]["fused - heads"]
    decision = "fused" if d1["low"] > 0 else "heads alone"
    report = {"questions": len(rows), "articles": len(groups), "scorer": scorer.model_name,
              "heads": str(scorer.heads), "chunk_tokens": args.chunk_tokens, "summary": summary,
              "decision": decision, "rule": "fused if the R@1 interval of fused - heads is above 0"}
    Path(args.out).write_text(json.dumps(report, indent=1))
    lines = [f"### SQuAD chunks, fresh questions: {len(rows)} questions over {len(groups)} articles, "
             f"{args.chunk_tokens}-token chunks", "",
             "| measure | BM25 | heads alone | fused | fused - heads | fused - BM25 | heads - BM25 |",
             "|---|---|---|---|---|---|---|"]
    for k in KS:
        s = summary[f"R@{k}"]

        def fmt(key: str, s: dict = s) -> str:
            d = s[key]
            star = " *" if d["low"] > 0 or d["high"] < 0 else ""
            return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{star}"

        lines.append(f"| R@{k} | {s['bm25']:.3f} | {s['heads']:.3f} | {s['fused']:.3f} | {fmt('fused - heads')} | "
                     f"{fmt('fused - bm25')} | {fmt('heads - bm25')} |")
    lines += ["", f"Decision rule (fixed before the run): {report['rule']}. Outcome: **{decision}**."]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
