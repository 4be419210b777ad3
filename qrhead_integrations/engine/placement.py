"""Where passages sit in the prompt when the placement must not depend on the input order.

``candidate_order="ranked"`` places passages by their first-stage scores (the caller's, else BM25 over the
passages for the query), best next to the query, equal scores by content. The prompt is then a function of
the passages, the query and the scores only: any permutation of the same input gives the same prompt, so
the same scores, at the cost of one placement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .prompt import Passage


def content_key(passage: Passage) -> str:
    """A stable key of a passage's content (title and text): breaks ties without the input order."""
    return hashlib.sha256(f"{passage.title or ''}\x00{passage.text}".encode()).hexdigest()


def ranked_order(scores: Sequence[float], passages: Sequence[Passage]) -> list[int]:
    """Input positions best first by ``scores``; equal scores ordered by content (:func:`content_key`).
    Passages equal in content and score keep their input order (swapping them changes nothing)."""
    if len(scores) != len(passages):
        raise ValueError(f"{len(scores)} scores for {len(passages)} passages")
    keys = [content_key(p) for p in passages]
    return sorted(range(len(passages)), key=lambda i: (-float(scores[i]), keys[i]))
