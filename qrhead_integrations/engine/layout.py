"""Lay passages out in prompts, once: truncation, windows and each window's prompt.

A :class:`Layout` is built from the passages before any forward pass and never changes. The passages
are tokenized once, inside the whole prompt (tokenizing pieces separately does not reproduce the
natural tokenization at passage boundaries); the token counts of that prompt drive truncation and
windows. Only when something is cut, or the passages are split into windows, are the affected prompts
tokenized again. A query's prompt re-tokenizes only the last passage and what follows it
(:func:`~.prompt.query_suffix`).

Windows (documented in docs/engine.md): when the prompt exceeds the token budget, passages are dealt
round-robin over the input order into the fewest windows that fit (see :mod:`.windows`); each window is
scored on its own and a passage's mass is scaled by ``n_w / mean(n_w)`` so windows stay comparable.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ContextBudgetError
from .prompt import (
    Passage,
    PromptTemplate,
    TokenizedPrompt,
    build_prompt,
    query_suffix,
    render_content,
    tokenize_prompt_offsets,
)
from .windows import plan_windows, window_scales

logger = logging.getLogger("qrhead_integrations")

#: Fewer tokens than this left for passages once the template and a query are in: refuse, nothing useful fits.
MIN_PASSAGE_ROOM = 16
#: A window's exact prompt can be a few tokens longer than planned (tokens merge differently across the new
#: passage boundaries): plan again with less room, at most this many times ...
LAYOUT_ATTEMPTS = 8
#: ... each time taking the measured excess plus this many tokens off the room.
LAYOUT_SLACK = 8


@dataclass(frozen=True)
class WindowPrompt:
    """One window of passages in one placement, with its prompt for the null query."""

    placement: str  # "reversed" or "as_given" (a "ranked" layout is a "reversed" one of the ranked order)
    window: int
    indices: tuple[int, ...]  # input positions, in prompt order
    passages: tuple[Passage, ...]  # prompt order
    null_prompt: TokenizedPrompt

    def passage_token_starts(self, tokenizer: Any, template: PromptTemplate) -> list[np.ndarray]:
        """Per passage (prompt order), each of its tokens' first character in ``passage.text`` (-1 for
        tokens of the ``[i] title`` part). Tokenizes the prompt once more, on demand (evidence only)."""
        cached = self.__dict__.get("_token_starts")
        if cached is not None:
            return cached
        text = render_content(self.passages, "N/A", template)
        prompt, anchors, _ = tokenize_prompt_offsets(tokenizer, text, template)
        out = []
        for pos, (a, b) in enumerate(prompt.passage_spans):
            lo = text.passage_chars[pos][0] + template.block_text_offset(pos + 1, self.passages[pos])
            rel = anchors[a:b] - lo
            out.append(np.where(anchors[a:b] >= lo, rel, -1))
        object.__setattr__(self, "_token_starts", out)
        return out

    def prompt(self, tokenizer: Any, query: str, template: PromptTemplate, null_query: str) -> TokenizedPrompt:
        """This window's prompt for ``query`` (the passages are not tokenized again when avoidable)."""
        if query == null_query:
            return self.null_prompt
        fast = query_suffix(tokenizer, self.null_prompt, self.passages, query, template)
        return fast if fast is not None else build_prompt(tokenizer, self.passages, query, template)


@dataclass(frozen=True)
class Layout:
    """Passages (input order, after truncation) and the prompts they are scored in."""

    passages: tuple[Passage, ...]
    truncated: tuple[bool, ...]
    windows: tuple[tuple[int, ...], ...]  # input positions of each window
    prompts: tuple[WindowPrompt, ...]  # every placement x window
    placements: tuple[str, ...]
    budget: int
    query_room: int
    whole: bool = True  # one prompt, nothing cut to fit the budget: the same layout for any query that fits
    originals: tuple[Passage, ...] = ()  # the caller's passages, uncut (results return these)

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def scale(self) -> np.ndarray:
        """Per-passage window factor ``n_w / mean(n_w)`` (1.0 when everything fits one prompt)."""
        return np.asarray(window_scales([list(w) for w in self.windows], len(self.passages)))

    @property
    def window_of(self) -> tuple[int, ...]:
        out = [0] * len(self.passages)
        for w, idx in enumerate(self.windows):
            for i in idx:
                out[i] = w
        return tuple(out)


def _order(indices: Sequence[int], placement: str) -> list[int]:
    return list(reversed(indices)) if placement == "reversed" else list(indices)


def _measure(tokenizer: Any, passages: Sequence[Passage], order: list[int], template: PromptTemplate,
             null_query: str) -> tuple[TokenizedPrompt, list[np.ndarray], list[int]]:
    """The null prompt of ``passages`` in ``order``; per passage (input order) the end characters of its
    text's tokens (relative to the text) and its block length in tokens (separator included)."""
    in_prompt = [passages[i] for i in order]
    text = render_content(in_prompt, null_query, template)
    prompt, anchors, ends = tokenize_prompt_offsets(tokenizer, text, template)
    text_ends: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(passages)
    lengths = [0] * len(passages)
    for pos, i in enumerate(order):
        a, b = prompt.passage_spans[pos]
        nxt = prompt.passage_spans[pos + 1][0] if pos + 1 < len(order) else prompt.suffix_start
        lengths[i] = nxt - a
        lo = text.passage_chars[pos][0] + template.block_text_offset(pos + 1, in_prompt[pos])
        tok = np.arange(a, b)
        mine = tok[anchors[tok] >= lo]
        text_ends[i] = ends[mine] - lo
    return prompt, text_ends, lengths


def _cut(passage: Passage, text_ends: np.ndarray, keep: int) -> Passage:
    end = int(text_ends[keep - 1]) if keep >= 1 else 0
    return Passage(passage.text[:end], passage.title)


def plan_layout(tokenizer: Any, passages: Sequence[Passage], *, order: Sequence[int] | None = None,
                **kwargs: Any) -> Layout:
    """Truncate, split into windows and tokenize ``passages`` (input order) for a token ``budget``
    (keywords: see :func:`_plan_layout`); the layout keeps the uncut passages as ``originals``.

    ``order``: input positions best first (placement ``"ranked"``): the passages are laid out as if they
    had arrived in that order (windows and placement follow it), and the layout maps back to input
    positions, so the prompts do not depend on the input order."""
    if order is None:
        layout = _plan_layout(tokenizer, passages, **kwargs)
        return dataclasses.replace(layout, originals=tuple(passages))
    order = list(order)
    if sorted(order) != list(range(len(passages))):
        raise ValueError(f"order must be a permutation of the {len(passages)} input positions")
    layout = _plan_layout(tokenizer, [passages[i] for i in order], positions=order, **kwargs)
    return _to_input_positions(layout, order, passages)


def _to_input_positions(layout: Layout, order: list[int], passages: Sequence[Passage]) -> Layout:
    """``layout`` of the passages in ``order`` with every position mapped back to the input's."""
    items: list[Passage] = list(layout.passages)
    truncated = list(layout.truncated)
    for j, i in enumerate(order):
        items[i], truncated[i] = layout.passages[j], layout.truncated[j]
    prompts = tuple(dataclasses.replace(wp, indices=tuple(order[j] for j in wp.indices)) for wp in layout.prompts)
    windows = tuple(tuple(order[j] for j in w) for w in layout.windows)
    return dataclasses.replace(layout, passages=tuple(items), truncated=tuple(truncated), windows=windows,
                               prompts=prompts, originals=tuple(passages))


def _plan_layout(
    tokenizer: Any,
    passages: Sequence[Passage],
    *,
    template: PromptTemplate,
    null_query: str,
    candidate_order: str,
    budget: int,
    query_room: int,
    max_passage_tokens: int | None = None,
    query_is_known: bool = False,
    budget_source: str = "max_context_tokens",
    positions: Sequence[int] | None = None,
) -> Layout:
    """Truncate, split into windows and tokenize ``passages`` (input order) for a token ``budget``.

    ``query_room``: tokens reserved for the query (the longest query to be scored on this layout);
    ``query_is_known``: it is the length of the actual query (not a reservation), so an error about it
    says the query is too long. ``budget_source`` names where ``budget`` comes from, for that error.
    ``positions``: each passage's input position (for messages), when ``passages`` are in another order.
    """
    placements = ("reversed", "as_given") if candidate_order == "both" else (candidate_order,)
    items = list(passages)
    n = len(items)
    truncated = [False] * n
    first = _order(range(n), placements[0])
    prompt, text_ends, lengths = _measure(tokenizer, items, first, template, null_query)
    if max_passage_tokens is not None:
        cut = [i for i in range(n) if len(text_ends[i]) > max_passage_tokens]
        for i in cut:
            items[i], truncated[i] = _cut(items[i], text_ends[i], max_passage_tokens), True
        if cut:
            prompt, text_ends, lengths = _measure(tokenizer, items, first, template, null_query)
    null_len = prompt.query_span[1] - prompt.query_span[0]
    overhead = len(prompt) - sum(lengths) - null_len + query_room
    available = budget - overhead
    if available < MIN_PASSAGE_ROOM:
        template_tokens = overhead - query_room
        if query_is_known and budget - template_tokens >= 2 * MIN_PASSAGE_ROOM:  # the query, not the budget
            raise ContextBudgetError(
                f"the query is too long: it has {query_room} tokens, and with the prompt template's "
                f"{template_tokens} tokens it leaves no room for passages within the context budget of {budget} "
                f"tokens ({budget_source}); shorten the query to well under {max(0, budget - template_tokens)} tokens")
        raise ContextBudgetError(
            f"the context budget ({budget} tokens) leaves no room for passages after the template and a "
            f"query of {query_room} tokens (raise max_context_tokens or lower max_query_tokens)")
    if len(prompt) - null_len + query_room <= budget:
        windows: list[list[int]] = [list(range(n))]
        measured = {placements[0]: prompt}
        return _layout(tokenizer, items, truncated, windows, placements, template, null_query, budget,
                       query_room, measured)
    room = available
    warned: set[int] = set()
    for _ in range(LAYOUT_ATTEMPTS):
        fitted, cut, sizes = list(items), list(truncated), list(lengths)
        for i in range(n):
            if lengths[i] > room:  # a passage longer than a whole window: cut it to fit one
                keep = max(1, len(text_ends[i]) - (lengths[i] - room))
                fitted[i], cut[i], sizes[i] = _cut(items[i], text_ends[i], keep), True, room
                if i not in warned:
                    warned.add(i)
                    logger.warning("passage %d does not fit the context budget of %d tokens on its own; it was "
                                   "truncated to %d tokens (flagged on its result)",
                                   i if positions is None else positions[i], budget, keep)
        windows = plan_windows(sizes, room)
        layout = _layout(tokenizer, fitted, cut, windows, placements, template, null_query, budget, query_room, {},
                         whole=False)
        longest = max(len(p.null_prompt) - null_len + query_room for p in layout.prompts)
        if longest <= budget:
            if len(windows) > 1:
                logger.info("%d passages split into %d windows (budget %d tokens)", n, len(windows), budget)
            return layout
        room -= longest - budget + LAYOUT_SLACK
        if room < MIN_PASSAGE_ROOM:
            break
    raise ContextBudgetError(f"could not lay out {n} passages within the context budget of {budget} tokens")


def _layout(tokenizer: Any, items: list[Passage], truncated: list[bool], windows: list[list[int]],
            placements: tuple[str, ...], template: PromptTemplate, null_query: str, budget: int,
            query_room: int, measured: dict[str, TokenizedPrompt], whole: bool = True) -> Layout:
    prompts = []
    for placement in placements:
        for w, idx in enumerate(windows):
            order = _order(idx, placement)
            in_prompt = tuple(items[i] for i in order)
            prompt = measured.get(placement) if len(windows) == 1 else None
            if prompt is None:
                prompt = build_prompt(tokenizer, in_prompt, null_query, template)
            prompts.append(WindowPrompt(placement, w, tuple(order), in_prompt, prompt))
    return Layout(tuple(items), tuple(truncated), tuple(tuple(w) for w in windows), tuple(prompts), placements,
                  budget, query_room, whole)
