"""Small retriever, larger generator: a QRHead scorer picks the chunks of one long document that a question
needs; a local generator, run through the framework's own LLM class, answers from those chunks only.

    python examples/long_document_qa.py --source bundled                 # the bundled lighthouse text
    python examples/long_document_qa.py                                  # a SQuAD article when the data is present
    python examples/long_document_qa.py --framework langchain --scorer generator   # one model selects and answers
    python examples/long_document_qa.py --trim-to-evidence 2 --token-budget 256    # evidence sentences only

The document is split with the chosen framework's splitter (``core``: token windows of the scorer's
tokenizer; ``llama-index``: SentenceSplitter; ``langchain``: RecursiveCharacterTextSplitter measured in
the scorer's tokens). Every chunk is scored in one QRHead pass (in windows when the document exceeds
the scorer's context); chunks are taken best first while they fit ``--token-budget`` tokens of the
*generator's* tokenizer, and handed to the generator in document order.

The generator is a LlamaIndex ``HuggingFaceLLM`` (``core`` and ``llama-index``) or a LangChain
``ChatHuggingFace`` over ``HuggingFacePipeline`` (``langchain``), built around the model object loaded
here (offline). ``--scorer small`` (default) scores with the embedded SmolLM2-135M; ``--scorer generator``
scores with the generator's own weights (``scorer_from_llm``: no second model in memory).

Why these defaults (docs/end_to_end.md): Qwen2.5-Coder-1.5B-Instruct answers, with a short answer prompt
and a 300-token budget. The bundled question ("Which engineer built the granite lighthouse whose upper
part was rebuilt on Plymouth Hoe?") needs a link across sentences (the tower rebuilt on Plymouth Hoe is
"Smeaton's tower", designed by "the engineer John Smeaton" two sentences earlier). The selection finds
the Eddystone chunks with any setting, but the 0.5B generator's answer depends on what else is in the
context: "Robert Stevenson" (160-token chunks, 600-token budget: the next section's "the engineer Robert
Stevenson" follows the Plymouth Hoe sentence), "James Douglass" (this chunking, 300 tokens), "John
Douglass" (the Eddystone section alone), "John Smeaton" (600 tokens). The 1.5B generator answers "John
Smeaton" in each of these contexts. Evidence trimming (``--trim-to-evidence 1``) keeps the Plymouth Hoe
sentence and its neighbour but drops the sentence that names Smeaton as the engineer: the 0.5B generator
then answers "Robert Stevenson" (300 tokens) and the 1.5B "James Douglass" (200 tokens). Trim only where
the answer sits next to the sentence the heads point at.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLED = HERE / "data" / "lighthouses.txt"
BUNDLED_QUESTION = "Which engineer built the granite lighthouse whose upper part was rebuilt on Plymouth Hoe?"
SQUAD_MAX_CHARS = 20000  # default SQuAD question: the first one whose article is at most this long
DEFAULT_GENERATOR = "qwen2.5-coder-1.5b-instruct"
PROMPT = ("Answer the question with a short phrase from the context.\n\n"
          "Context:\n{context}\n\nQuestion: {question}\nAnswer:")


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
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--chunk-overlap", type=int, default=0)
    p.add_argument("--token-budget", type=int, default=300, help="context budget, in generator tokens")
    p.add_argument("--trim-to-evidence", type=int, default=None, metavar="N",
                   help="keep only the N evidence sentences of each chunk (and their neighbours)")
    p.add_argument("--scorer", choices=["small", "generator"], default="small",
                   help="small: a separate QRHead scorer (--scorer-model); generator: the generator's own weights")
    p.add_argument("--scorer-model", default=None,
                   help="QRHead scorer model (default: the embedded SmolLM2-135M)")
    p.add_argument("--heads", default=None, help="scorer heads, e.g. '13-18,13-21' (default: registered set)")
    p.add_argument("--max-context-tokens", type=int, default=None,
                   help="scorer prompt budget (windows beyond)")
    p.add_argument("--generator-model", default=DEFAULT_GENERATOR,
                   help="generator: packaged model name, folder, .gguf file or hub id (`qrhead models`)")
    p.add_argument("--max-new-tokens", type=int, default=32)
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
    gold = {"answers": ["John Smeaton", "Smeaton"]} if not args.question else {}
    return "lighthouses", BUNDLED.read_text(encoding="utf-8"), args.question or BUNDLED_QUESTION, gold


def chat_prompt(tokenizer):
    """Plain text -> the tokenizer's chat template with one user turn (what the LLM classes send)."""
    def to_prompt(text: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return to_prompt


def build_generator(args: argparse.Namespace):
    """The framework's own LLM class around a model loaded here (offline), greedy decoding.
    Returns (llm, answer(prompt) -> str, tokenizer, name)."""
    from qrhead_integrations.engine.loading import load_model

    gen = load_model(args.generator_model, device=args.device)  # packaged models: converted once, then cached
    if args.framework == "langchain":
        from langchain_core.messages import HumanMessage
        from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
        from transformers import pipeline

        pipe = pipeline("text-generation", model=gen.model, tokenizer=gen.tokenizer,
                        max_new_tokens=args.max_new_tokens, do_sample=False, return_full_text=False)
        llm = ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe, model_id=gen.name), tokenizer=gen.tokenizer,
                              model_id=gen.name)
        return llm, lambda prompt: str(llm.invoke([HumanMessage(content=prompt)]).content), gen.tokenizer, gen.name
    from llama_index.llms.huggingface import HuggingFaceLLM

    llm = HuggingFaceLLM(model=gen.model, tokenizer=gen.tokenizer, model_name=gen.name, tokenizer_name=gen.name,
                         context_window=8192, max_new_tokens=args.max_new_tokens,
                         generate_kwargs={"do_sample": False}, completion_to_prompt=chat_prompt(gen.tokenizer),
                         is_chat_model=True)
    return llm, lambda prompt: llm.complete(prompt).text, gen.tokenizer, gen.name


def make_scorer(args: argparse.Namespace, llm):
    """The QRHead scorer: a separate small model, or the generator's own weights (no copy, no reload)."""
    from qrhead_integrations import QRHeadScorer

    if args.scorer == "generator":
        if args.framework == "langchain":
            from qrhead_integrations.langchain.llm import scorer_from_llm
        else:
            from qrhead_integrations.llama_index.llm import scorer_from_llm
        return scorer_from_llm(llm, args.heads, max_context_tokens=args.max_context_tokens)
    return QRHeadScorer.from_pretrained(args.scorer_model, args.heads, device=args.device,
                                        max_context_tokens=args.max_context_tokens)


def row(start: int, end: int, score: float, index: int, text: str) -> dict:
    return {"start": start, "end": end, "score": score, "index": index, "text": text}


def select(args, doc_id: str, text: str, question: str, count_tokens, scorer) -> tuple[list[dict], int]:
    """Split with the chosen framework and select; returns (chunks in context order, number of chunks)."""
    from qrhead_integrations.chunks import select_chunks, split_by_tokens

    trim = {"trim_to_evidence": args.trim_to_evidence} if args.trim_to_evidence else {}
    if args.framework == "core":
        chunks = split_by_tokens(text, scorer.tokenizer, args.chunk_tokens, args.chunk_overlap, source_id=doc_id)
        picked = select_chunks(scorer, question, chunks, token_budget=args.token_budget,
                               keep_document_order=True, count_tokens=count_tokens, **trim)
        return [row(c.start, c.end, c.score, c.index, c.text) for c in picked], len(chunks)
    if args.framework == "llama-index":
        from llama_index.core import Document
        from llama_index.core.node_parser import SentenceSplitter

        from qrhead_integrations.llama_index import QRHeadChunkRetriever, QRHeadRerank

        retriever = QRHeadChunkRetriever(
            Document(text=text, id_=doc_id), reranker=QRHeadRerank.from_scorer(scorer),
            splitter=SentenceSplitter(chunk_size=args.chunk_tokens, chunk_overlap=args.chunk_overlap),
            token_budget=args.token_budget, keep_document_order=True, count_tokens=count_tokens)
        if trim:  # evidence trimming: the framework-free selection on the retriever's own chunks
            picked = select_chunks(scorer, question, retriever.chunks, token_budget=args.token_budget,
                                   keep_document_order=True, count_tokens=count_tokens, **trim)
            return [row(c.start, c.end, c.score, c.index, c.text) for c in picked], len(retriever.chunks)
        nodes = retriever.retrieve(question)
        rows = [row(n.node.start_char_idx, n.node.end_char_idx, n.score, n.node.metadata["chunk_index"],
                    n.node.get_content()) for n in nodes]
        return rows, len(retriever.chunks)
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from qrhead_integrations.langchain import QRHeadChunkRetriever, QRHeadReranker

    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        scorer.tokenizer, chunk_size=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
    retriever = QRHeadChunkRetriever(document=Document(page_content=text, id=doc_id),
                                     reranker=QRHeadReranker.from_scorer(scorer, top_n=None),
                                     text_splitter=splitter, token_budget=args.token_budget,
                                     keep_document_order=True, count_tokens=count_tokens)
    if trim:
        picked = select_chunks(scorer, question, retriever.chunks, token_budget=args.token_budget,
                               keep_document_order=True, count_tokens=count_tokens, **trim)
        return [row(c.start, c.end, c.score, c.index, c.text) for c in picked], len(retriever.chunks)
    docs = retriever.invoke(question)
    rows = [row(d.metadata["start_index"], d.metadata["end_index"], d.metadata["relevance_score"],
                d.metadata["chunk_index"], d.page_content) for d in docs]
    return rows, len(retriever.chunks)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc_id, text, question, gold = load_document(args)
    if args.max_chars:
        text = text[:args.max_chars]
    llm, answer, gen_tokenizer, gen_name = build_generator(args)
    scorer = make_scorer(args, llm)

    def count_tokens(s: str) -> int:  # the budget is the generator's
        return len(gen_tokenizer.encode(s, add_special_tokens=False))

    t0 = time.perf_counter()
    rows, n_chunks = select(args, doc_id, text, question, count_tokens, scorer)
    t_select = time.perf_counter() - t0
    doc_tokens = len(scorer.tokenizer.encode(text, add_special_tokens=False))
    print(f"document: {doc_id}{' (' + gold['title'] + ')' if gold.get('title') else ''}, "
          f"{len(text)} characters, {doc_tokens} scorer tokens")
    print(f"question: {question}")
    shared = " (the generator's own weights)" if args.scorer == "generator" else ""
    print(f"scorer: {scorer.model_name}{shared} ({len(scorer.heads)} heads, context {scorer.context_limit()} "
          f"tokens); generator: {gen_name} via {type(llm).__name__}")
    what = f"evidence sentences (N={args.trim_to_evidence}) of chunks" if args.trim_to_evidence else "chunks"
    print(f"\n{args.framework} splitter: {n_chunks} chunks, all scored in one pass ({t_select:.1f}s); "
          f"selected {len(rows)} {what} within {args.token_budget} generator tokens, in document order:")
    for r in rows:
        assert text[r["start"]:r["end"]] == r["text"], "offsets must point at the selected text"
        preview = " ".join(r["text"].split())[:80]
        print(f"  chunk {r['index']:>3} [{r['start']}:{r['end']}] score={r['score']:.4f} "
              f"tokens={count_tokens(r['text'])}  {preview}")
    print("  (offsets checked: document[start:end] == selected text for every piece)")
    if gold.get("evidence"):
        hit = any(r["start"] < e and s < r["end"] for r in rows for s, e in gold["evidence"])
        print(f"  gold evidence {gold['evidence']} {'is' if hit else 'is NOT'} in the selected chunks")

    context = "\n\n".join(r["text"] for r in rows)
    t0 = time.perf_counter()
    reply = answer(PROMPT.format(context=context, question=question)).strip()
    print(f"\nanswer ({gen_name}, {time.perf_counter() - t0:.1f}s): {reply}")
    if gold.get("answers"):
        print(f"gold answers: {gold['answers']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
