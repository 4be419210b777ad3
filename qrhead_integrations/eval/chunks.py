"""Long-document chunk selection (the paper's long-context use) on SQuAD articles.

Chunks are placed in document order (``candidate_order="as_given"``).
Each article (~8K tokens) is split with LlamaIndex's ``SentenceSplitter`` into token-sized chunks
(the scorer model's tokenizer counts the tokens), all chunks are scored for a question in one go
(windows where the article exceeds the model's context; the article is encoded once and every
question about it reuses the cache), and a question's gold chunks are those overlapping its evidence
span. Reported: recall@k (share of gold chunks in the top k) and hit@k (at least one in the top k).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.heads import HeadSet, resolve_heads
from ..engine.scoring import QRHeadScorer
from .data import LongContextDataset
from .first_stage import BM25, DenseRetriever
from .masses import MassCache, all_head_masses


def split_document(text: str, tokenizer: Any, chunk_tokens: int, chunk_overlap: int = 0
                   ) -> list[tuple[int, int]]:
    """Character spans of the chunks LlamaIndex's SentenceSplitter makes (exact: text[a:b] == chunk)."""
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    def count(s: str) -> list[int]:
        return tokenizer(s, add_special_tokens=False)["input_ids"]

    splitter = SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=chunk_overlap, tokenizer=count,
                                include_metadata=False, include_prev_next_rel=False)
    nodes = splitter.get_nodes_from_documents([Document(text=text)])
    spans = []
    for node in nodes:
        a, b = node.start_char_idx, node.end_char_idx
        if a is None or b is None or text[a:b] != node.get_content():
            # SentenceSplitter could not locate the chunk: search forward from the previous chunk.
            start = spans[-1][0] if spans else 0
            a = text.find(node.get_content(), start)
            if a < 0:
                raise ValueError("a chunk is not a substring of its document")
            b = a + len(node.get_content())
        spans.append((a, b))
    return spans


def gold_chunks(spans: list[tuple[int, int]], evidence: list[list[int]]) -> list[int]:
    return [i for i, (a, b) in enumerate(spans) if any(a < e1 and b > e0 for e0, e1 in evidence)]


def recall_hit(scores: np.ndarray, gold: list[int], k: int) -> tuple[float, float]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    found = len(set(order) & set(gold))
    return found / len(gold), float(found > 0)


def run_chunk_experiment(
    scorer: QRHeadScorer,
    root: str | Path,
    head_sets: dict[str, Any],
    *,
    chunk_tokens: int = 256,
    chunk_overlap: int = 0,
    n_questions: int | None = None,
    ks: tuple[int, ...] | list[int] = (1, 3, 5),
    seed: int = 0,
    random_seeds: int = 5,
    dense: bool = True,
    cache_root: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    ds = LongContextDataset.load(root)
    articles = squad_chunk_items(scorer, root, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                                 n_questions=n_questions, seed=seed)
    shape = scorer.shape
    resolved = {k: resolve_heads(v, shape, scorer.model_name) for k, v in head_sets.items()}
    size = len(resolved["qrhead"])
    randoms = [HeadSet.random_heads(shape, size, seed=s) for s in range(random_seeds)]
    cache = MassCache(Path(cache_root), scorer, {"data": ds.root.name, "chunk_tokens": chunk_tokens,
                                                 "chunk_overlap": chunk_overlap, "task": "chunks"}) \
        if cache_root else None
    encoder = DenseRetriever() if dense else None
    per_method: dict[str, dict[str, dict[str, float]]] = {}
    hits: dict[str, dict[str, dict[str, float]]] = {}
    n_chunks, n_gold, windows = [], [], []

    def record(method: str, qid: str, scores: np.ndarray, gold: list[int]) -> None:
        for k in ks:
            r, h = recall_hit(np.asarray(scores), gold, k)
            per_method.setdefault(method, {}).setdefault(str(k), {})[qid] = r
            hits.setdefault(method, {}).setdefault(str(k), {})[qid] = h

    all_heads = HeadSet.all_heads(shape)
    # Chunks of one document keep document order in the prompt (not the retriever-style reversed order).
    scorer = scorer.with_options(candidate_order="as_given", calibrate=True)
    total = sum(len(a["questions"]) for a in articles)
    bar = tqdm(total=total, desc=f"{ds.root.name} chunks", disable=not show_progress)
    for art in articles:
        chunks, ids = art["chunks"], art["ids"]
        bm25 = BM25.over(chunks)
        chunk_vecs = encoder.encode(chunks) if encoder else None
        enc = None
        for q in art["questions"]:
            gold = q["gold"]
            n_chunks.append(len(chunks))
            n_gold.append(len(gold))
            m = cache.get(q["id"], ids) if cache else None
            if m is None:
                if enc is None:
                    enc = scorer.encode(chunks, heads=all_heads)
                    windows.append(len(enc.layout.windows))
                hs = enc.head_masses(q["question"])
                m = all_head_masses(all_heads, hs.real * hs.scale[None, :], hs.null * hs.scale[None, :], hs.truncated)
                if cache:
                    cache.put(q["id"], ids, m)
            for name, h in resolved.items():
                record(name, q["id"], m.scores(h.heads), gold)
            for i, h in enumerate(randoms):
                record(f"random#{i}", q["id"], m.scores(h.heads), gold)
            record("bm25", q["id"], np.array(bm25.scores(q["question"])), gold)
            if encoder is not None:
                record("dense", q["id"], chunk_vecs @ encoder.encode([q["question"]])[0], gold)
            bar.update(1)
    bar.close()
    for table in (per_method, hits):
        rnd = [k for k in table if k.startswith("random#")]
        if rnd:
            table["random"] = {str(k): {q: float(np.mean([table[r][str(k)][q] for r in rnd]))
                                        for q in table[rnd[0]][str(k)]} for k in ks}
            for r in rnd:
                del table[r]
    qids = sorted(q["id"] for a in articles for q in a["questions"])
    digest = hashlib.sha256(" ".join(qids).encode()).hexdigest()[:8]
    return {
        "description": (f"{ds.root.name}: {len(n_gold)} questions over {len(articles)} articles, SentenceSplitter "
                        f"chunks of {chunk_tokens} tokens (overlap {chunk_overlap}), question set {digest}"),
        "recall": per_method,
        "hit": hits,
        "chunks_per_article": float(np.mean(n_chunks)) if n_chunks else 0.0,
        "gold_chunks_per_question": float(np.mean(n_gold)) if n_gold else 0.0,
        "windows_per_article": float(np.mean(windows)) if windows else None,
        "head_sets": {k: str(v) for k, v in resolved.items()},
    }


def squad_chunk_items(scorer: QRHeadScorer, root: str | Path, *, chunk_tokens: int = 256, chunk_overlap: int = 0,
                      n_questions: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Per article with sampled questions: its chunks (document order, ids ``doc:a-b``) and questions with
    their gold chunk indices (questions without a gold chunk are dropped)."""
    ds = LongContextDataset.load(root)
    questions = sorted(ds.questions, key=lambda q: q["id"])
    if n_questions is not None and n_questions < len(questions):
        random.Random(seed).shuffle(questions)
        questions = sorted(questions[:n_questions], key=lambda q: q["id"])
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        by_doc.setdefault(q["doc_id"], []).append(q)
    out = []
    for doc_id, qs in by_doc.items():
        text = ds.documents[doc_id]["text"]
        spans = split_document(text, scorer.tokenizer, chunk_tokens, chunk_overlap)
        keep = []
        for q in qs:
            gold = gold_chunks(spans, q["evidence"])
            if gold:
                keep.append({"id": q["id"], "question": q["question"], "gold": gold, "answers": q.get("answers", [])})
        if keep:
            out.append({"doc_id": doc_id, "chunks": [text[a:b] for a, b in spans],
                        "ids": [f"{doc_id}:{a}-{b}" for a, b in spans], "questions": keep})
    return out

