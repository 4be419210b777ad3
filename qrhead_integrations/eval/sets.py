"""NQ-open multi-document candidates, built from ``nq-open-oracle.jsonl`` (``qrhead eval qa --task nq``).

``nq_multidoc``: each question's gold passage among 19 distractors, the BM25-nearest passages of *other*
questions that do not contain one of the question's answers (so no distractor is an unlabelled gold
passage). The first stage is BM25 over the whole NQ passage set; in first-stage order the gold passage is
wherever BM25 puts it. Questions are drawn by a seeded shuffle: ``skip``/``n`` select disjoint slices.
The quality study's named sets (``research/sets.py``) build on it.
"""

from __future__ import annotations

import random
from pathlib import Path

from .data import read_jsonl
from .first_stage import BM25, doc_text
from .masses import Candidates
from .rerank import RerankData


def nq_multidoc(root: str | Path, *, n: int = 200, skip: int = 0, seed: int = 0, depth: int = 20) -> RerankData:
    rows = list(read_jsonl(Path(root) / "nq-open-oracle.jsonl"))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    chosen = order[skip: skip + n]
    docs = [{"title": r.get("title") or "", "text": r["text"]} for r in rows]
    ids = [f"nq-{i}" for i in range(len(rows))]
    bm25 = BM25(ids, [doc_text(d) for d in docs])
    hits = bm25.search([rows[i]["question"] for i in chosen], min(len(rows), depth * 6))
    items, qrels = [], {}
    for qi, ranked in zip(chosen, hits):
        answers = [a.lower() for a in rows[qi].get("answers", []) if a]
        scores = dict(ranked)
        picked = []
        for doc_id, _ in ranked:
            j = int(doc_id[3:])
            if j == qi or any(a in doc_text(docs[j]).lower() for a in answers):
                continue
            picked.append(j)
            if len(picked) == depth - 1:
                break
        cand = picked + [qi]
        # first-stage order: BM25 score (the gold passage may score 0 for BM25: then it comes last)
        cand.sort(key=lambda j: (-scores.get(ids[j], 0.0), j))
        qid = f"nq-{qi}"
        items.append(Candidates(qid, rows[qi]["question"], [ids[j] for j in cand], [docs[j] for j in cand],
                                [scores.get(ids[j], 0.0) for j in cand]))
        qrels[qid] = {ids[qi]: 1}
    desc = (f"nq-open multi-document: {len(items)} questions (seed {seed}, skip {skip}), gold passage + "
            f"{depth - 1} BM25 distractors from other questions' passages without the answer, BM25 order")
    return RerankData("nq-multidoc", qrels, items, desc)
