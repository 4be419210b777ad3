"""Every door, both orders: the hand-written obvious-question set through the scorer, the CLI, the server and
both frameworks' rerankers, candidates as written and reversed (issue #25, items 1 and 3).

    python scripts/doors_check.py                       # embedded default model, ~3 minutes on 2 CPU cores
    python scripts/doors_check.py --out docs/results/doors-obvious.json

Reads tests/data/obvious_questions.json (36 questions written for this check, 3-10 candidates each,
one answers, at least one distractor shares the question's words, the answer at every position). For
each door and order it records the ranking, then reports per door: how often the answer is first
(given / reversed), how often the top passage is the same in both orders, the mean Kendall tau between
the two orders' rankings (1 = the input order changes nothing), and the largest difference between
the door's scores and ``scorer.rank``'s on the same input (0 = the door is the same product).

Doors: ``scorer.rank``; ``scorer.encode(...).rank``; the CLI (``qrhead rank --json``, run in this
process on the same cached model); the server (``POST /v2/rerank`` through FastAPI's test client);
LangChain's ``QRHeadReranker.compress_documents`` and LlamaIndex's ``QRHeadRerank.postprocess_nodes``,
given documents/nodes without first-stage scores, as users pass hand-made lists.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "obvious_questions.json"


def kendall_tau(a: list[int], b: list[int]) -> float:
    """Kendall's tau between two rankings of the same items (lists of item ids, best first)."""
    pos_a = {x: i for i, x in enumerate(a)}
    pos_b = {x: i for i, x in enumerate(b)}
    items = list(pos_a)
    n = len(items)
    if n < 2:
        return 1.0
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            x, y = items[i], items[j]
            s += 1 if (pos_a[x] - pos_a[y]) * (pos_b[x] - pos_b[y]) > 0 else -1
    return s / (n * (n - 1) / 2)


def doors(scorer: Any) -> dict[str, Any]:
    """name -> function(query, candidates) -> [(input index, score)] best first."""
    from fastapi.testclient import TestClient
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from qrhead_integrations.cli import main as cli_main
    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadRerank
    from qrhead_integrations.serve import create_app

    client = TestClient(create_app(scorer))
    client.__enter__()
    lc = QRHeadReranker.from_scorer(scorer, top_n=None)
    li = QRHeadRerank.from_scorer(scorer, top_n=None)

    def cli(query: str, cands: list[str]) -> list[tuple[int, float]]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "passages.jsonl"
            path.write_text("".join(json.dumps({"text": c}) + "\n" for c in cands))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = cli_main(["rank", "--query", query, str(path), "--json", "--top-k", str(len(cands))])
            if code != 0:
                raise RuntimeError(f"qrhead rank exited {code}")
            results = json.loads(out.getvalue())["rankings"][0]["results"]
        return [(r["index"], r["score"]) for r in results]

    def server(query: str, cands: list[str]) -> list[tuple[int, float]]:
        r = client.post("/v2/rerank", json={"model": "qrhead", "query": query, "documents": cands})
        r.raise_for_status()
        return [(x["index"], x["relevance_score"]) for x in r.json()["results"]]

    def langchain(query: str, cands: list[str]) -> list[tuple[int, float]]:
        docs = [Document(page_content=c, metadata={"i": i}) for i, c in enumerate(cands)]
        return [(d.metadata["i"], d.metadata["relevance_score"]) for d in lc.compress_documents(docs, query)]

    def llama_index(query: str, cands: list[str]) -> list[tuple[int, float]]:
        # the position travels in metadata the scorer does not read (LlamaIndex's reranker reads embed-mode
        # metadata as the passage's title, so the same input means the same text and no title)
        nodes = [NodeWithScore(node=TextNode(text=c, metadata={"i": i}, excluded_embed_metadata_keys=["i"]))
                 for i, c in enumerate(cands)]
        out = li.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
        return [(n.node.metadata["i"], float(n.score)) for n in out]

    return {
        "scorer.rank": lambda q, c: [(r.index, r.score) for r in scorer.rank(q, c)],
        "encode().rank": lambda q, c: [(r.index, r.score) for r in scorer.encode(c).rank(q)],
        "CLI": cli,
        "server": server,
        "LangChain": langchain,
        "LlamaIndex": llama_index,
    }


REFERENCES = ("BM25 over the candidates", "heads alone (first_stage=None)",
              "default, both placements (candidate_order='both', 2x cost)",
              "default, first input next to the query (candidate_order='reversed', before issue #25's end)")


def references(scorer: Any) -> dict[str, Any]:
    """Not doors: BM25 over the candidates alone, the heads alone, the default reading both placements (an
    input and its reverse then get the same scores) and the default with the first input next to the query
    (the placement before the default became 'ranked')."""
    from qrhead_integrations.first_stage import bm25_scores

    def ranked(scores: list[float]) -> list[tuple[int, float]]:
        return sorted(enumerate(scores), key=lambda x: (-x[1], x[0]))

    def ranking(sc: Any) -> Any:
        return lambda q, c: [(r.index, r.score) for r in sc.rank(q, c)]

    return {REFERENCES[0]: lambda q, c: ranked(bm25_scores(q, c)),
            REFERENCES[1]: ranking(scorer.with_options(first_stage=None)),
            REFERENCES[2]: ranking(scorer.with_options(candidate_order="both")),
            REFERENCES[3]: ranking(scorer.with_options(candidate_order="reversed"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/doors_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--heads", default=None)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here (and a .md beside it)")
    p.add_argument("--doors", nargs="+", default=None, help="only these doors (default: all; scorer.rank always)")
    args = p.parse_args(argv)

    from qrhead_integrations import QRHeadScorer

    data = json.loads(args.data.read_text())
    items = data["items"]
    scorer = QRHeadScorer.from_pretrained(args.model, args.heads, device="cpu")
    runs: dict[str, dict[str, list[list[tuple[int, float]]]]] = {}
    selected = {k: v for k, v in doors(scorer).items() if args.doors is None or k in args.doors or k == "scorer.rank"}
    for name, door in {**selected, **references(scorer)}.items():
        runs[name] = {"given": [], "reversed": []}
        for item in items:
            cands = item["candidates"]
            runs[name]["given"].append(door(item["query"], cands))
            n = len(cands)
            back = door(item["query"], cands[::-1])
            runs[name]["reversed"].append([(n - 1 - i, s) for i, s in back])  # input positions of the original
        print(f"{name}: done", file=sys.stderr)
    ref = runs["scorer.rank"]
    rows = []
    for name, by_order in runs.items():
        gold_first = {o: sum(r[0][0] == it["gold"] for r, it in zip(by_order[o], items)) for o in by_order}
        same_top = sum(g[0][0] == r[0][0] for g, r in zip(by_order["given"], by_order["reversed"]))
        taus = [kendall_tau([i for i, _ in g], [i for i, _ in r]) for g, r in zip(by_order["given"], by_order["reversed"])]
        diff = None if name in REFERENCES else max(
            abs(dict(a)[i] - s) for o in by_order for mine, a in zip(by_order[o], ref[o]) for i, s in mine)
        missed = sorted({it["id"] for o in by_order for r, it in zip(by_order[o], items) if r[0][0] != it["gold"]})
        rows.append({"door": name, "gold_first_given": gold_first["given"], "gold_first_reversed": gold_first["reversed"],
                     "same_top_both_orders": same_top, "mean_kendall_tau": round(sum(taus) / len(taus), 3),
                     "max_abs_diff_vs_scorer_rank": diff, "missed": missed})
    n = len(items)
    given = sys.argv[1:] if argv is None else list(argv)
    lines = [f"Obvious-question set ({n} hand-written questions, {args.data.name}), model "
             f"{scorer.model_name}, heads {scorer.heads.name} ({len(scorer.heads)}); candidates without "
             f"first-stage scores; command: `{' '.join(['python scripts/doors_check.py', *given])}`.", "",
             "| door | answer first, given order | reversed order | same top in both orders | mean Kendall tau "
             "between orders | largest score difference vs scorer.rank |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['door']} | {r['gold_first_given']}/{n} | {r['gold_first_reversed']}/{n} | "
                     f"{r['same_top_both_orders']}/{n} | {r['mean_kendall_tau']:.3f} | "
                     + (f"{r['max_abs_diff_vs_scorer_rank']:.1e} |" if r["max_abs_diff_vs_scorer_rank"] is not None
                        else "(reference, not a door) |"))
    missed = rows[0]["missed"]
    lines += ["", f"Questions whose answer `scorer.rank` misses in either order: {', '.join(missed) or 'none'}."]
    for it in items:
        if it["id"] in missed:
            lines.append(f"- {it['id']} ({it['topic']}): {it['query']} (trap: {it['trap']})")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"data": args.data.name, "model": scorer.model_name,
                                        "heads": scorer.heads.name, "items": n, "rows": rows,
                                        "rankings": runs}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text + "\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
