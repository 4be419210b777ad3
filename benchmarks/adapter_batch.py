"""Several questions over one document through the LangChain adapters: ``batch()`` vs a loop of ``invoke()``.

Run from the repository root (the numbers in docs/langchain.md come from this command)::

    OMP_NUM_THREADS=1 python -m benchmarks.adapter_batch
    OMP_NUM_THREADS=1 python -m benchmarks.adapter_batch --questions 8 --chunk-size 500 --filler 10 --repeats 3

The document is the hand-written set's passages (tests/data/handwritten_set.json) with as many paragraphs
of filler text (SciFact abstracts when the shared data is there, else synthetic text; see
``benchmarks.workloads.text_source``) between them, split with a ``RecursiveCharacterTextSplitter``; the
questions are the hand-written set's. The scorer is the embedded default model (SmolLM2-135M-Instruct,
CPU, float32).

Two cases, each timed as the median of ``--repeats`` runs after a warm-up call:

- ``QRHeadChunkRetriever``: every question scores every chunk of the document;
- ``QRHeadRerankRetriever`` behind a first stage that returns the same candidates (the chunks) for every
  question, as a small corpus or a filter-only first stage does.

``batch()`` scores the shared candidates on one encoding (the document is read once, each question adds
a short pass); the loop reads the document once per question. The script checks that both give the same
documents and scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def build_document(filler_paragraphs: int, paragraph_chars: int) -> tuple[str, list[str], str]:
    """(document, questions, filler source): the hand-written passages with ``filler_paragraphs`` paragraphs
    of at most ``paragraph_chars`` characters (cut at a word) spread between them."""
    from .workloads import text_source

    data = json.loads((ROOT / "tests" / "data" / "handwritten_set.json").read_text())
    source, stream = text_source()
    n = len(data["passages"])
    paragraphs: list[str] = []
    for i, passage in enumerate(data["passages"]):
        paragraphs.append(passage)
        for _ in range(filler_paragraphs // n + (i < filler_paragraphs % n)):
            paragraphs.append(next(stream)[:paragraph_chars].rsplit(" ", 1)[0])
    return "\n\n".join(paragraphs), [q["query"] for q in data["queries"]], source


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=500, help="characters per chunk (splitter setting)")
    parser.add_argument("--filler", type=int, default=10, help="filler paragraphs between the passages")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default=None, help="scorer model (default: the embedded default)")
    args = parser.parse_args(argv)

    import torch
    from langchain_core.documents import Document
    from langchain_core.runnables import RunnableLambda
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from qrhead_integrations.langchain import QRHeadChunkRetriever, QRHeadReranker, QRHeadRerankRetriever

    text, questions, source = build_document(args.filler, args.chunk_size - 20)
    questions = questions[: args.questions]
    reranker = QRHeadReranker(model=args.model, device="cpu", dtype="float32").load()
    splitter = RecursiveCharacterTextSplitter(chunk_size=args.chunk_size, chunk_overlap=0)
    chunks = QRHeadChunkRetriever(document=Document(page_content=text, id="doc"), reranker=reranker,
                                  text_splitter=splitter, k=3)
    candidates = [Document(page_content=c.text, id=f"c{c.index}") for c in chunks.chunks]
    rerank = QRHeadRerankRetriever(base_retriever=RunnableLambda(lambda _query: list(candidates)),
                                   reranker=reranker, k=3)
    tokens = reranker.scorer.count_tokens(text)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"model {reranker.scorer.model_name}; torch threads {torch.get_num_threads()} (OMP_NUM_THREADS={threads}); "
          f"{platform.processor() or platform.machine()}")
    print(f"document: {tokens} tokens, {len(chunks.chunks)} chunks of <= {args.chunk_size} characters "
          f"(filler: {source}); {len(questions)} questions; median of {args.repeats} runs")
    print()
    print("| retriever | loop of invoke (s) | batch (s) | speed-up | same results |")
    print("|---|---|---|---|---|")
    for name, retriever in (("QRHeadChunkRetriever", chunks), ("QRHeadRerankRetriever", rerank)):
        retriever.invoke(questions[0])  # warm-up
        loop_s, loop = timed(lambda r=retriever: [r.invoke(q) for q in questions], args.repeats)
        batch_s, batch = timed(lambda r=retriever: r.batch(questions), args.repeats)
        same = loop == batch
        print(f"| {name} | {loop_s:.2f} | {batch_s:.2f} | {loop_s / batch_s:.1f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
