"""Where inside a passage the selected heads read: evidence sentences with character offsets.

The heads' attention is per token, so a passage's calibrated score is a sum over its tokens. Grouping the
tokens by sentence says which sentences carry the score: each :class:`Evidence` is a sentence of the
caller's passage text (``text[start:end]``) and its share of the passage's positive calibrated mass.
Sentences are found with a small rule (a ``.``, ``!`` or ``?`` followed by whitespace, or a line break),
enough to point at the evidence; no language model or framework splitter is involved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*")


@dataclass(frozen=True)
class Evidence:
    """A sentence of a passage and the share of the passage's (positive) calibrated mass it holds."""

    start: int
    end: int
    share: float
    text: str


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace between sentences excluded)."""
    spans, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def evidence_sentences(text: str, token_starts: np.ndarray, token_scores: np.ndarray, top: int = 3) -> tuple[Evidence, ...]:
    """The ``top`` sentences of ``text`` by their share of the positive per-token scores (``token_starts``:
    each token's first character in ``text``; tokens outside the text, e.g. of the title, are < 0)."""
    sentences = sentence_spans(text)
    if not sentences or top <= 0:
        return ()
    positive = np.clip(np.asarray(token_scores, dtype=np.float64), 0.0, None)
    starts = np.asarray(token_starts)
    mass = np.zeros(len(sentences))
    bounds = np.array([a for a, _ in sentences])
    inside = starts >= 0
    which = np.searchsorted(bounds, starts[inside], side="right") - 1
    np.add.at(mass, np.clip(which, 0, len(sentences) - 1), positive[inside])
    total = mass.sum()
    if total <= 0:
        return ()
    order = sorted(range(len(sentences)), key=lambda i: (-mass[i], i))[:top]
    return tuple(Evidence(sentences[i][0], sentences[i][1], float(mass[i] / total), text[sentences[i][0]:sentences[i][1]])
                 for i in order if mass[i] > 0)
