"""Print the Markdown tables of docs/results.md from the JSON files in docs/results/.

    python scripts/results_tables.py > /tmp/tables.md      # print every table
    python scripts/results_tables.py --fill README.md docs/results.md docs/end_to_end.md  # refresh the tables

Every number in the tables comes from the result files written by scripts/reproduce_results.sh.
Differences are paired bootstrap means with 95% intervals (10,000 resamples over queries, seed 0);
``*`` marks an interval that excludes 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from qrhead_integrations.eval.metrics import paired_bootstrap
from qrhead_integrations.eval.rerank import load_result

RES = Path(__file__).resolve().parents[1] / "docs" / "results"

LABELS = {
    "bm25": "BM25", "dense": "dense (all-MiniLM-L6-v2)", "all-heads": "all heads (ICR)",
    "random": "random heads (mean of 5 seeds)", "retrieval-heads": "retrieval heads (Wu et al.)",
    "qrhead": "**QRHead (16 heads)**", "qrhead-uncalibrated": "QRHead, no calibration",
    "qrhead+rrf": "QRHead + BM25, reciprocal rank", "qrhead+linear": "QRHead + BM25, linear",
    "qrhead-both": "QRHead, both placements (2x cost)", "qrhead-poscorr": "QRHead, position-corrected",
    "qrhead-s1": "QRHead from subset 1", "qrhead-s2": "QRHead from subset 2", "qrhead-s3": "QRHead from subset 3",
}
ORDER = ["bm25", "dense", "random", "all-heads", "retrieval-heads", "qrhead", "qrhead-uncalibrated",
         "qrhead+rrf", "qrhead+linear", "qrhead-both", "qrhead-poscorr", "qrhead-s1", "qrhead-s2", "qrhead-s3"]
COND = {"first_stage": "first-stage order", "shuffled": "shuffled order"}


def diff(a: dict, b: dict) -> str:
    d = paired_bootstrap(a, b)
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{' *' if d.significant else ''}"


def rerank_table(name: str, measure: str, baselines: tuple[str, ...] = ("bm25", "all-heads"),
                 methods: list[str] | None = None) -> str:
    r = load_result(RES / name)
    conds = [c for c in COND if c in r.per_query]
    labels = dict(COND)
    if "in its own order" in r.data:  # a run without scores (HotpotQA's given paragraphs)
        labels["first_stage"] = "data set's order"
    head = ["method"]
    for c in conds:
        head += [f"{measure}, {labels[c]}"] + [f"vs {b}" for b in baselines]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods or ORDER:
        if not any(m in r.per_query[c] for c in conds):
            continue
        row = [LABELS.get(m, m)]
        for c in conds:
            pq = r.per_query[c]
            if m not in pq:
                row += ["–"] * (1 + len(baselines))
                continue
            row.append(f"{np.mean(list(pq[m][measure].values())):.3f}")
            row += ["" if b == m or b not in pq else diff(pq[m][measure], pq[b][measure]) for b in baselines]
        out.append("| " + " | ".join(row) + " |")
    n = len(next(iter(next(iter(r.per_query.values())).values()))[measure])
    out.append("")
    out.append(f"{r.data}; {n} queries; model {r.model} ({r.notes.get('dtype', '')}), passages cut to "
               f"{r.notes.get('max_passage_tokens')} tokens.")
    return "\n".join(out)


def chunk_table(name: str) -> str:
    d = json.loads((RES / name).read_text())
    ks = sorted(next(iter(d["recall"].values())), key=int)
    head = ["method"] + [f"recall@{k}" for k in ks] + [f"hit@{k}" for k in ks] + ["recall@3 vs BM25"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in ORDER:
        if m not in d["recall"]:
            continue
        row = [LABELS.get(m, m)]
        row += [f"{np.mean(list(d['recall'][m][k].values())):.3f}" for k in ks]
        row += [f"{np.mean(list(d['hit'][m][k].values())):.3f}" for k in ks]
        row.append("" if m == "bm25" else diff(d["recall"][m]["3"], d["recall"]["bm25"]["3"]))
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append(f"{d['description']}; {d['chunks_per_article']:.1f} chunks per article, "
               f"{d['gold_chunks_per_question']:.2f} gold chunks per question.")
    return "\n".join(out)


def needle_table(name: str) -> str:
    d = json.loads((RES / name).read_text())
    out = ["| heads masked | accuracy |", "|---|---|"]
    for k, v in d["accuracy"].items():
        label = {"none": "none", "qrhead": "16 QR heads", "retrieval": "16 retrieval heads"}.get(k)
        if label is None and k.startswith("random:"):
            _, n, seed = k.split(":")
            label = f"{n} random heads, seed {seed}"
        elif label is None:
            label = f"`{k}`"
        out.append(f"| {label} | {v:.3f} |")
    out.append("")
    out.append(f"{d['model']}: {d['trials']} trials (context {d['lengths']} tokens x depths {d['depths']} x "
               f"{d['needles']} needles), greedy answers; accuracy = share of the needle's key words in the answer.")
    return "\n".join(out)


def stability(name: str, measure: str = "nDCG@10") -> str:
    r = load_result(RES / name)
    st = r.notes.get("stability")
    if not st:
        return ""
    lines = [f"Top-16 heads from three disjoint detection subsets: pairwise overlap {st['pairwise_overlap']} "
             f"of 16, {st['common_to_all']} heads common to all three."]
    for c in COND:
        if c in r.per_query:
            vals = [np.mean(list(r.per_query[c][f"qrhead-s{i}"][measure].values())) for i in (1, 2, 3)]
            lines.append(f"- {measure} ({COND[c]}) with each subset's heads: "
                         + ", ".join(f"{v:.3f}" for v in vals) + f" (spread {max(vals) - min(vals):.3f})")
    return "\n".join(lines)


HOTPOT_SELECTORS = {
    "full": "full context (every paragraph)", "oracle": "oracle (the 2 supporting paragraphs)",
    "bm25": "BM25 top-k", "dense": "dense MiniLM top-k", "qrhead": "heads alone top-k",
    "qrhead-bm25": "**the default** (heads + BM25) top-k", "qrhead-gen": "the reader's own heads top-k",
}


def hotpot_table(name: str) -> str:
    """One HotpotQA test run (issue #28): answer EM/F1 per selector, F1 against full context, BM25 and the
    heads alone (paired bootstrap over questions), evidence recall and CPU seconds per question."""
    rep = json.loads((RES / name).read_text())
    summ = rep["summary"]
    head = ["selector", "n", "EM", "F1", "F1 vs full", "F1 vs BM25", "F1 vs heads alone", "evidence recall",
            "holds both", "where both held: F1 vs oracle", "context tokens", "select CPU s", "read CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ci(a: dict, base: str, spec: str) -> str:
        if base == spec or base not in summ:
            return ""
        stored = summ[spec].get(f"f1_vs_{base}")  # the run's summary holds those against full and bm25
        if stored is None:
            fresh = paired_bootstrap(a, summ[base]["f1_per_question"])
            stored = {"mean": fresh.mean, "low": fresh.low, "high": fresh.high, "significant": fresh.significant}
        return interval(stored)

    def interval(d: dict) -> str:
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{' *' if d['significant'] else ''}"

    def where_both_held(d: dict | None) -> str:
        return "" if d is None else f"{interval(d)} (n={d['n']})"

    for spec in HOTPOT_SELECTORS:
        if spec not in summ:
            continue
        e = summ[spec]
        f1 = e["f1_per_question"]
        lines.append(f"| {HOTPOT_SELECTORS[spec]} | {e['n']} | {e['em']:.3f} | {e['f1']:.3f} | {ci(f1, 'full', spec)} | "
                     f"{ci(f1, 'bm25', spec)} | {ci(f1, 'qrhead', spec)} | {e['evidence_recall']:.2f} | "
                     f"{e.get('holds_all_supporting', float('nan')):.2f} | "
                     f"{where_both_held(e.get('f1_vs_oracle_where_all_held'))} | "
                     f"{e['tokens']:.0f} | {e['select_s']:.1f} | {e['gen_s']:.1f} |")
    window = rep["settings"].get("max_context_tokens")
    lines += ["", f"{rep['generator']}, k = {rep.get('top_k')} paragraphs"
              + (f", scoring window {window} tokens" if window else "")
              + f", {rep['questions']} questions, ~{rep['doc_tokens_mean']:.0f} reader tokens of paragraphs each. "
              "`*`: the 95% paired bootstrap interval excludes 0. Holds both: share of questions whose context "
              "holds both supporting paragraphs; where both held: the reader's F1 on those questions minus its F1 "
              "from the two supporting paragraphs alone (the oracle) on the same questions. CPU seconds per question at one thread."]
    return "\n".join(lines)


def hotpot_rules_table() -> str:
    """Issue #28's dev choice: recall@k of the supporting paragraphs per selector and setting, the chosen k
    (bold) and, for the haystack, recall@4 of the default at each scoring window."""
    rules = json.loads((RES / "hotpotqa-rules.json").read_text())
    chosen, curves = rules["chosen"], rules["recall@k"]
    names = {"qrhead-bm25": "the default (heads + BM25)", "qrhead": "heads alone", "bm25": "BM25"}
    ks = sorted({int(k) for t in curves.values() for c in t.values() for k in c})
    lines = ["| setting | selector | " + " | ".join(f"R@{k}" for k in ks) + " |", "|" + "---|" * (len(ks) + 2)]
    for setting, table in curves.items():
        n = rules["questions"][setting]
        pick = chosen.get(f"k_{setting}")
        for source, curve in table.items():
            cells = [f"**{curve[str(k)]:.3f}**" if k == pick and source == "qrhead-bm25" else f"{curve[str(k)]:.3f}"
                     for k in ks]
            lines.append(f"| {setting} ({n} dev q) | {names.get(source, source)} | " + " | ".join(cells) + " |")
    r4 = rules["recall@4 by window (haystack, default)"]
    lines += ["", "Chosen: k = " + ", ".join(f"{chosen[k]} ({k[2:]})" for k in chosen if k.startswith("k_")
                                            and chosen[k] is not None)
              + (f"; haystack scoring window {chosen['window']} tokens (default's R@4 by window: "
                 + ", ".join(f"{w}: {v:.3f}" for w, v in r4.items()) + ")" if chosen["window"] else
                 "; haystack window pending (dev rankings incomplete)")]
    return "\n".join(lines)


def hotpot_fusion_table() -> str:
    """Issue #28 item 3: the default's fusion weight on dev (mean recall@2..K, recall@K per setting), the
    rule's choice and whether a weight is recommended for multi-hop use."""
    res = json.loads((RES / "hotpotqa-fusion.json").read_text())
    score, by, rk = res["score (mean recall@2..K, both settings)"], res["by setting"], res["recall@K"]

    def label(w: str) -> str:
        return {"0.0": "0.0 (BM25 alone, reference)", "0.5": "0.5 (shipped)", "1.0": "1.0 (heads alone)"}.get(w, w)

    lines = ["| heads' weight | both settings: mean R@2..K | distractor: mean R@2..7 | haystack: mean R@2..8 "
             "| distractor R@7 | haystack R@8 |", "|---|---|---|---|---|---|"]
    for w in score:
        cell = f"**{score[w]:.4f}**" if float(w) == res["best"] else f"{score[w]:.4f}"
        lines.append(f"| {label(w)} | {cell} | {by['distractor'][w]:.4f} | {by['haystack'][w]:.4f} "
                     f"| {rk['distractor'][w]:.3f} | {rk['haystack'][w]:.3f} |")
    gain = res["best minus shipped"]
    bm = res["shipped minus BM25 alone"]
    lines += ["", f"{res['questions']} dev questions, each in both settings. Best: {res['best']}"
              + ("" if gain is None else f" ({gain['mean']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}] over 0.5)")
              + "; recommended for multi-hop use: "
              + (f"**{res['recommended']}**" if res["recommended"] is not None else "none (the shipped 0.5 stays)")
              + f". Shipped minus BM25 alone: {bm['mean']:+.4f} [{bm['low']:+.4f}, {bm['high']:+.4f}]."]
    return "\n".join(lines)


def hotpot_reader_table() -> str:
    """Issue #28 item 3: the default's k and context order chosen by the reader's answers on dev (mean F1 of
    every candidate per setting, the rule's choice, the 1.5B's check of it); K = the setting's current k."""
    res = json.loads((RES / "hotpotqa-reader.json").read_text())
    settings = res["settings"]

    def k_of(c: str) -> int:
        return int(c.split(",")[0][2:])

    small = sorted({k_of(c) for r in settings.values() for c in r["mean F1"]} -
                   {k_of(r["current"]) for r in settings.values()})
    heads = [f"k={k}" for k in small] + ["K (current)"]
    lines = ["| setting | " + " | ".join(f"{h} input | {h} best first" for h in heads) + " |",
             "|---|" + "---|---|" * len(heads)]
    for name, r in settings.items():
        top = k_of(r["current"])
        row = []
        for k in [*small, top]:
            for order in ("input", "ranked"):
                c = f"k={k},{order}"
                v = r["mean F1"][c]
                row.append(f"**{v:.3f}**" if c == r["best"] else f"{v:.3f}")
        lines.append(f"| {name} (K = {top}, {r['questions']} q): mean F1 | " + " | ".join(row) + " |")
        for label, key in (("share holding both supporting", "holds both supporting"),
                           ("F1 where both held", "mean F1 where both held"), ("F1 where not", "mean F1 where not")):
            if key in r:
                vals = [r[key][f"k={k},{o}"] for k in [*small, top] for o in ("input", "ranked")]
                lines.append(f"| {name}: {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in vals)
                             + " |")
    notes = []
    for name, r in settings.items():
        d = r["best minus current"]
        text = f"{name}: best {r['best']}" + ("" if d is None else
                                               f" ({d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] F1 over {r['current']})")
        text += "; recommended: " + (f"**{r['recommended']}**" if r["recommended"] else f"none ({r['current']} stays)")
        if "read CPU s per question (every candidate)" in r:
            text += f"; {r['read CPU s per question (every candidate)']:.0f} CPU s of reading per question"
        check = r.get("1.5b")
        if check:
            c = check["recommended minus current"]
            text += (f"; 1.5B reader on dev ({check['questions']} q): {c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
                     + ("" if check["holds"] is None else " (holds)" if check["holds"] else " (does not hold)"))
        notes.append(text)
    return "\n".join(lines + ["", "Reader: " + res["reader"] + " (mean answer F1 on dev). " + ". ".join(notes) + "."])


def _verdict(d) -> str:
    return "**beats**" if d.low > 0 else "below" if d.high < 0 else "level"


def _registered_heads() -> str:
    """The shipped SmolLM2 set as the result files write head lists: ``layer-head`` comma-separated."""
    from qrhead_integrations.engine.heads import HeadSet

    path = Path(__file__).resolve().parents[1] / "qrhead_integrations" / "head_sets" / "smollm2-135m-instruct.qrhead.json"
    return ",".join(f"{layer}-{head}" for layer, head in HeadSet.from_json(path).heads)


def readme_summary() -> str:
    """README's "How good is it?" table: the default against BM25 where each use was measured, from the
    result files (a row measured with an earlier default head set says so)."""
    rows = ["| use, data | measure | input (any order) | default | BM25 ‡ | default - BM25 [95% CI] | |",
            "|---|---|---|---:|---:|---|---|"]
    current = _registered_heads()
    notes = []

    def add(use: str, measure: str, order: str, a: dict, b: dict, current_set: bool) -> None:
        d = paired_bootstrap(a, b)
        mark = "" if current_set else " †"
        rows.append(f"| {use}{mark} | {measure} | {order} | {np.mean(list(a.values())):.3f} | "
                    f"{np.mean(list(b.values())):.3f} | {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] | {_verdict(d)} |")
        if not current_set and not notes:
            notes.append("† measured with the default head set before issue #25 (32 heads, deepest layer 28); "
                         "the current set is level with it on the study sets (docs/quality.md).")

    of = RES / "order-free-default.json"
    if of.is_file():
        summary = json.loads(of.read_text())
        labels = {"scifact-test": "SciFact claims, 60 q, abstracts cut to 128 tokens",
                  "nq": "NQ-open, gold among 20 passages, 40 q", "hotpotqa": "HotpotQA multi-hop, 100 q"}
        # the default places passages by the scores it fuses with ('ranked'): one value per query for
        # every input order, (a) with the first stage's scores, (b) without (BM25 over the candidates)
        pq = summary["place"]["per_query"]
        for key, label in labels.items():
            for config, name in (("a", "scores given"), ("b", "no scores")):
                add(label, "nDCG@10", name, pq[f"{key}|{config}"]["ranked"], pq[f"{key}|{config}"]["BM25"], True)
        confirm, ranked = summary.get("confirm"), summary.get("confirm_ranked")
        if confirm and ranked:  # all 300 SciFact test claims, the current set (product path)
            label = "SciFact claims, all 300 q, abstracts cut to 128 tokens"
            add(label, "nDCG@10", "scores given", confirm["per_query"]["(a)"], confirm["per_query"]["BM25"], True)
            add(label, "nDCG@10", "no scores", ranked["per_query"]["B-ranked"],
                ranked["per_query"]["BM25 over the candidates"], True)
    qa = json.loads((RES / "qa-nq-budget-test400.json").read_text())
    w = json.loads((RES / "scifact-whole-passages.json").read_text())  # records no head list: qa's run's set
    add("SciFact claims, all 300 q, abstracts read whole", "nDCG@10", "scores given",
        w["per_query_ndcg10"]["default, whole passages"], w["per_query_ndcg10"]["BM25"],
        qa["scorer_heads"] == current)
    add("End to end: NQ, 192-token context for a 0.5B reader, 400 q", "answered", "–",
        qa["summary"]["qrhead-bm25"]["correct"], qa["summary"]["bm25"]["correct"],
        qa["scorer_heads"] == current)
    cf = json.loads((RES / "chunk-fusion-confirm.json").read_text())
    r1 = cf["summary"]["R@1"]
    d = r1["fused - bm25"]
    mark = "" if cf["heads"] == current else " †"
    rows.append(f"| One document's chunks: SQuAD articles, 92 q{mark} | R@1 | one document | {r1['fused']:.3f} | "
                f"{r1['bm25']:.3f} | {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | "
                f"{'**beats**' if d['low'] > 0 else 'below' if d['high'] < 0 else 'level'} |")
    ob = json.loads((RES / "doors-obvious.json").read_text())
    by = {r["door"]: r for r in ob["rows"]}
    n = ob["items"]
    dr, bm = by["scorer.rank"], by["BM25 over the candidates"]
    rows.append(f"| Hand-written obvious questions with word-sharing traps, {n} q | answer first | no scores: given / reversed | "
                f"{dr['gold_first_given']} / {dr['gold_first_reversed']} | {bm['gold_first_given']} / "
                f"{bm['gold_first_reversed']} | | fails often |")
    for setting, label in (("distractor", "its 10 paragraphs"), ("haystack", "~50 paragraphs")):
        for tag, reader in (("qwen05", "0.5B"), ("qwen15", "1.5B")):
            path = RES / f"qa-hotpot-{setting}-{tag}.json"
            if not path.is_file():
                continue
            rep = json.loads(path.read_text())
            if rep["questions"] < 100:  # a run in progress is not a result
                continue
            summ = rep["summary"]
            add(f"End to end: HotpotQA multi-hop, {label}, top {rep['top_k']} for a {reader} reader, "
                f"{rep['questions']} q", "answer F1", "–", summ["qrhead-bm25"]["f1_per_question"],
                summ["bm25"]["f1_per_question"], rep["scorer_heads"] == current)
    notes.append("‡ BM25: the first stage's own ranking where its scores are given; BM25 over the given "
                 "candidates alone where none are (what a caller without a first stage has).")
    return "\n".join(rows + [""] + notes)


def sections() -> dict[str, str]:
    """Every table, keyed by "<file> — <measure>" (re-ranking) or "<file>" (chunks, needle)."""
    out: dict[str, str] = {}
    reranks = {
        "scifact-smollm2.json": ("nDCG@10",), "scifact-qwen15-20.json": ("nDCG@10",),
        "default-smollm2-60.json": ("nDCG@10",), "default-qwen05-60.json": ("nDCG@10",),
        "hotpot-smollm2.json": ("R@2", "R@5"),
    }
    for name, measures in reranks.items():
        if (RES / name).is_file():
            for m in measures:
                out[f"{name} — {m}"] = rerank_table(name, m)
            s = stability(name)
            if s:
                out[f"{name} — stability"] = s
    if (RES / "hotpotqa-rules.json").is_file():
        out["hotpotqa-rules.json"] = hotpot_rules_table()
    if (RES / "hotpotqa-fusion.json").is_file():
        out["hotpotqa-fusion.json"] = hotpot_fusion_table()
    if (RES / "hotpotqa-reader.json").is_file():
        out["hotpotqa-reader.json"] = hotpot_reader_table()
    for name in sorted(p.name for p in RES.glob("qa-hotpot-*.json")):
        out[name] = hotpot_table(name)
    for name in sorted(p.name for p in RES.glob("squad-*.json")):
        out[name] = chunk_table(name)
    for name in sorted(p.name for p in RES.glob("needle*-*.json")):
        out[name] = needle_table(name)
    out["readme-summary"] = readme_summary()
    return out


#: The docs whose tables this script fills (tests/test_docs_generated.py fails when one drifts).
FILLED = ("README.md", "docs/results.md", "docs/end_to_end.md")


def render(text: str, tables: dict[str, str], name: str = "document") -> str:
    """``text`` with the text between each ``<!-- table: KEY -->`` and ``<!-- /table -->`` replaced by
    the current table KEY."""
    import re

    def repl(m: re.Match[str]) -> str:
        key = m.group(1).strip()
        if key not in tables:
            raise SystemExit(f"{name}: no table {key!r} (have: {', '.join(tables)})")
        return f"<!-- table: {key} -->\n{tables[key]}\n<!-- /table -->"

    return re.sub(r"<!-- table: (.+?) -->.*?<!-- /table -->", repl, text, flags=re.S)


def fill(doc: Path, tables: dict[str, str]) -> None:
    """Rewrite ``doc``'s generated tables."""
    doc.write_text(render(doc.read_text(), tables, str(doc)))


def main(argv: list[str]) -> None:
    tables = sections()
    if argv[:1] == ["--fill"]:
        for path in argv[1:]:
            fill(Path(path), tables)
            print(f"filled {path}")
        return
    for key, body in tables.items():
        print(body + "\n" if key.endswith("stability") else f"### {key}\n\n{body}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
