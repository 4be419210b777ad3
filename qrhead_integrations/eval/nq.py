"""Natural Questions (open) with one gold passage each: detection examples with built distractors.

Distractors are the BM25 nearest passages of *other* questions (title + text), skipping any that
contains one of the question's answers, so a distractor cannot be an unlabelled gold passage. The gold
passage is put at a seeded random position among them.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..engine.detection import DetectionExample
from .data import read_jsonl
from .first_stage import BM25, doc_text


def nq_examples(
    root: str | Path, depth: int = 20, limit: int | None = None, skip: int = 0, seed: int = 0, **_: object
) -> tuple[list[DetectionExample], str]:
    rows = list(read_jsonl(Path(root) / "nq-open-oracle.jsonl"))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    chosen = order[skip: None if limit is None else skip + limit]
    docs = [{"title": r.get("title") or "", "text": r["text"]} for r in rows]
    bm25 = BM25([str(i) for i in range(len(rows))], [doc_text(d) for d in docs])
    hits = bm25.search([rows[i]["question"] for i in chosen], min(len(rows), depth * 4))
    rng = random.Random(seed + 1)
    out = []
    for qi, ranked in zip(chosen, hits):
        answers = [a.lower() for a in rows[qi].get("answers", []) if a]
        distractors = []
        for doc_id, _ in ranked:
            j = int(doc_id)
            text = doc_text(docs[j]).lower()
            if j == qi or any(a in text for a in answers):
                continue
            distractors.append(docs[j])
            if len(distractors) == depth - 1:
                break
        pos = rng.randrange(len(distractors) + 1)
        passages = distractors[:pos] + [docs[qi]] + distractors[pos:]
        out.append(DetectionExample(rows[qi]["question"], tuple(passages), frozenset([pos]), f"nq-{qi}"))
    desc = (f"nq-open-oracle, {len(out)} questions (seed {seed}, skip {skip}), gold passage + {depth - 1} "
            "BM25 distractors from other questions' passages without the answer, gold at a random position")
    return out, desc
