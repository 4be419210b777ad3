"""Small retriever, larger generator: a small QRHead scorer picks the chunks of one long document that a
question needs; a different, larger local model answers from those chunks only.

    python examples/long_document_qa.py                      # a SQuAD article when the data is present
    python examples/long_document_qa.py --source bundled --question "Who designed the first Fresnel lens?"
    python examples/long_document_qa.py --framework langchain --token-budget 400

The document is split with the chosen framework's splitter (``core``: token windows of the scorer's
tokenizer; ``llama-index``: SentenceSplitter; ``langchain``: RecursiveCharacterTextSplitter measured in
the scorer's tokens). Every chunk is scored in one QRHead pass (in windows when the document exceeds
the scorer's context), then chunks are taken best first while they fit ``--token-budget`` tokens of the
*generator's* tokenizer, and handed to the generator in document order.

Defaults: scorer = the embedded SmolLM2-135M-Instruct; generator = the packaged
Qwen2.5-Coder-0.5B-Instruct (install: see `qrhead models`). Runs offline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from local_generator import DEFAULT_GENERATOR, LocalGenerator, answer_prompt  # noqa: E402 (the examples folder is not a package)

BUNDLED = HERE / "data" / "lighthouses.txt"
BUNDLED_QUESTION = "Which engineer built the granite lighthouse whose upper part was rebuilt on Plymouth Hoe?"
SQUAD_MAX_CHARS = 20000  # default SQuAD question: the first one whose article is at most this long


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=["auto", "squad", "bundled", "file"], default="auto",
                   help="auto: a SQuAD article from ../shared/data when present, else the bundled text")
    p.add_argument("--document", default=None, help="a UTF-8 text file (implies --source file)")
    p.add_argument("--question", default=None)
    p.add_argument("--squad-question-id", default=None,
                   help="a question id from squad-articles/questions.jsonl")
    p.add_argument("--max-chars", type=int, default=None, help="use only the start of the document")
    p.add_argument("--framework", choices=["core", "llama-index", "langchain"], default="core")
    p.add_argument("--chunk-tokens", type=int, default=160)
    p.add_argument("--chunk-overlap", type=int, default=16)
    p.add_argument("--token-budget", type=int, default=600, help="context budget, in generator tokens")
    p.add_argument("--scorer-model", default=None,
                   help="QRHead scorer model (default: the embedded SmolLM2-135M)")
    p.add_argument("--heads", default=None, help="scorer heads, e.g. '13-18,13-21' (default: registered set)")
    p.add_argument("--max-context-tokens", type=int, default=None,
                   help="scorer prompt budget (windows beyond)")
    p.add_argument("--generator-model", default=DEFAULT_GENERATOR)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


def load_document(args: argparse.Namespace) -> tuple[str, str, str, dict]:
    """(doc id, text, question, gold info) for the chosen source."""
    source = "file" if args.document else args.source
    if source in ("auto", "squad"):
        from qrhead_integrations.eval.data import LongContextDataset, shared_data_dir

        root = shared_data_dir()
        folder = root / "squad-articles" if root else None
        if folder is not None and (folder / "documents.jsonl").is_file():
            data = LongContextDataset.load(folder)
            if args.squad_question_id:
                matches = [q for q in data.questions if q["id"] == args.squad_question_id]
                if not matches:
                    raise SystemExit(f"no question {args.squad_question_id!r} in {folder}")
                item = matches[0]
            else:
                item = next(q for q in data.questions
                            if len(data.documents[q["doc_id"]]["text"]) <= SQUAD_MAX_CHARS)
            doc = data.documents[item["doc_id"]]
            gold = {"answers": item.get("answers", []), "evidence": item.get("evidence", []),
                    "title": doc["title"]}
            return item["doc_id"], doc["text"], args.question or item["question"], gold
        if source == "squad":
            raise SystemExit("the SQuAD articles are not available (set QRHEAD_DATA or use --source bundled)")
    if source == "file":
        path = Path(args.document or "")
        if not path.is_file():
            raise SystemExit(f"--document {path} not found")
        if not args.question:
            raise SystemExit("--document needs --question")
        return path.stem, path.read_text(encoding="utf-8"), args.question, {}
    return "lighthouses", BUNDLED.read_text(encoding="utf-8"), args.question or BUNDLED_QUESTION, {}


def row(start: int, end: int, score: float, index: int, text: str) -> dict:
    return {"start": start, "end": end, "score": score, "index": index, "text": text}


def select(args, doc_id: str, text: str, question: str, count_tokens) -> tuple[list[dict], int, object]:
    """Split and select with the chosen framework; returns (chunks in context order, #chunks, scorer)."""
    scorer_kw = {"model": args.scorer_model, "heads": args.heads, "device": args.device,
                 "max_context_tokens": args.max_context_tokens}
    if args.framework == "core":
        from qrhead_integrations import QRHeadScorer
        from qrhead_integrations.chunks import select_chunks, split_by_tokens

        scorer = QRHeadScorer.from_pretrained(args.scorer_model, args.heads, device=args.device,
                                              max_context_tokens=args.max_context_tokens)
        chunks = split_by_tokens(text, scorer.tokenizer, args.chunk_tokens, args.chunk_overlap,
                                 source_id=doc_id)
        picked = select_chunks(scorer, question, chunks, token_budget=args.token_budget,
                               keep_document_order=True, count_tokens=count_tokens)
        rows = [row(c.start, c.end, c.score, c.index, c.text) for c in picked]
        return rows, len(chunks), scorer
    if args.framework == "llama-index":
        from llama_index.core import Document
        from llama_index.core.node_parser import SentenceSplitter

        from qrhead_integrations.llama_index import QRHeadChunkRetriever, QRHeadRerank

        reranker = QRHeadRerank(**scorer_kw)
        retriever = QRHeadChunkRetriever(
            Document(text=text, id_=doc_id), reranker=reranker,
            splitter=SentenceSplitter(chunk_size=args.chunk_tokens, chunk_overlap=args.chunk_overlap),
            token_budget=args.token_budget, keep_document_order=True, count_tokens=count_tokens)
        nodes = retriever.retrieve(question)
        rows = [row(n.node.start_char_idx, n.node.end_char_idx, n.score, n.node.metadata["chunk_index"],
                    n.node.get_content()) for n in nodes]
        return rows, len(retriever.chunks), reranker.scorer
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from qrhead_integrations.langchain import QRHeadChunkRetriever, QRHeadReranker

    reranker = QRHeadReranker(top_n=None, **scorer_kw)
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        reranker.scorer.tokenizer, chunk_size=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
    retriever = QRHeadChunkRetriever(document=Document(page_content=text, id=doc_id), reranker=reranker,
                                     text_splitter=splitter, token_budget=args.token_budget,
                                     keep_document_order=True, count_tokens=count_tokens)
    docs = retriever.invoke(question)
    rows = [row(d.metadata["start_index"], d.metadata["end_index"], d.metadata["relevance_score"],
                d.metadata["chunk_index"], d.page_content) for d in docs]
    return rows, len(retriever.chunks), reranker.scorer


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc_id, text, question, gold = load_document(args)
    if args.max_chars:
        text = text[:args.max_chars]
    generator = LocalGenerator(args.generator_model, device=args.device, max_new_tokens=args.max_new_tokens)

    t0 = time.perf_counter()
    rows, n_chunks, scorer = select(args, doc_id, text, question, generator.count_tokens)
    t_select = time.perf_counter() - t0
    doc_tokens = len(scorer.tokenizer.encode(text, add_special_tokens=False))
    print(f"document: {doc_id}{' (' + gold['title'] + ')' if gold.get('title') else ''}, "
          f"{len(text)} characters, {doc_tokens} scorer tokens")
    print(f"question: {question}")
    print(f"scorer: {scorer.model_name} ({len(scorer.heads)} heads, "
          f"context {scorer.context_limit()} tokens); "
          f"generator: {generator.name}")
    print(f"\n{args.framework} splitter: {n_chunks} chunks, all scored in one pass ({t_select:.1f}s); "
          f"selected {len(rows)} within {args.token_budget} generator tokens, in document order:")
    for r in rows:
        assert text[r["start"]:r["end"]] == r["text"], "offsets must point at the chunk text"
        preview = " ".join(r["text"].split())[:80]
        print(f"  chunk {r['index']:>3} [{r['start']}:{r['end']}] score={r['score']:.4f} "
              f"tokens={generator.count_tokens(r['text'])}  {preview}")
    print("  (offsets checked: document[start:end] == chunk text for every chunk)")
    if gold.get("evidence"):
        hit = any(r["start"] < e and s < r["end"] for r in rows for s, e in gold["evidence"])
        print(f"  gold evidence {gold['evidence']} {'is' if hit else 'is NOT'} in the selected chunks")

    context = "\n\n".join(r["text"] for r in rows)
    t0 = time.perf_counter()
    answer = generator.generate(answer_prompt(context, question))
    print(f"\nanswer ({generator.name}, {time.perf_counter() - t0:.1f}s): {answer}")
    if gold.get("answers"):
        print(f"gold answers: {gold['answers']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
