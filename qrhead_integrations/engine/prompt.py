"""The QRHead prompt and exact token spans of its passages and query.

The prompt follows the reference setup: passages first, each as ``[i] title\\ntext`` after
"Here are some paragraphs:", then the instruction and ``Query: ...``, wrapped in the model's chat
format. Spans are computed from the tokenizer's offset mapping: every token belongs to the piece of
the prompt that holds its first non-whitespace character. The prompt string is never searched, so repeated text,
``[3]`` markers inside passages or a passage equal to the query cannot confuse the spans.

The chat frame (system/user header and assistant header) is tokenized with special tokens; the user
content is tokenized with ``split_special_tokens=True``, so a passage or query containing text such
as ``<|im_end|>`` is read as plain text and cannot break out of the user turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TEMPLATE_VERSION = "qrhead-prompt/1"


@dataclass(frozen=True)
class Passage:
    """A passage as the engine sees it: text plus an optional title."""

    text: str
    title: str = ""


def as_passage(item: Any, position: int | None = None) -> Passage:
    """Normalise a caller's passage (``str``, mapping with ``text``, or object with ``.text``)."""
    where = f" at position {position}" if position is not None else ""
    if isinstance(item, Passage):
        return item
    if isinstance(item, str):
        return Passage(item)
    if isinstance(item, Mapping):
        if "text" not in item:
            raise TypeError(f"passage{where} is a mapping without a 'text' key")
        text, title = item["text"], item.get("title") or ""
    elif hasattr(item, "text"):
        text, title = item.text, getattr(item, "title", "") or ""
    elif hasattr(item, "page_content"):
        text, title = item.page_content, ""
    else:
        raise TypeError(
            f"passage{where} has unsupported type {type(item).__name__}: "
            "expected str, a mapping with 'text' (and optional 'title'), or an object with .text"
        )
    if text is None:
        text = ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise TypeError(f"passage{where}: text and title must be strings")
    return Passage(text, title)


@dataclass(frozen=True)
class PromptTemplate:
    """Wording of the QRHead prompt. The defaults are the reference (QRHead/ICR) wording."""

    header: str = "Here are some paragraphs:"
    separator: str = "\n\n"
    instruction: str = (
        "Please find information that are relevant to the following query in the paragraphs above."
    )
    query_label: str = "Query:"
    use_chat_template: bool = True
    version: str = TEMPLATE_VERSION

    def passage_block(self, number: int, passage: Passage) -> str:
        if passage.title:
            return f"[{number}] {passage.title}\n{passage.text}"
        return f"[{number}] {passage.text}"


DEFAULT_TEMPLATE = PromptTemplate()


@dataclass(frozen=True)
class ChatFrame:
    """Text before and after the user content once the chat template is applied."""

    before: str
    after: str
    add_special_tokens: bool  # only for prompts without a chat template (adds BOS where the model wants it)


_SENTINEL = "QRHEADUSERCONTENTSENTINEL"


def chat_frame(tokenizer: Any, template: PromptTemplate = DEFAULT_TEMPLATE) -> ChatFrame:
    """Find the chat-template text around a single user message, once per tokenizer."""
    key = (id(tokenizer), template.use_chat_template)
    cached = _FRAMES.get(key)
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    frame = ChatFrame("", "", True)
    if template.use_chat_template and getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
        )
        if isinstance(rendered, str) and rendered.count(_SENTINEL) == 1:
            before, after = rendered.split(_SENTINEL)
            frame = ChatFrame(before, after, False)
    _FRAMES[key] = (tokenizer, frame)
    return frame


_FRAMES: dict[tuple[int, bool], tuple[Any, ChatFrame]] = {}


@dataclass(frozen=True)
class PromptText:
    """The user content of one prompt and the character ranges of its pieces."""

    content: str
    passage_chars: tuple[tuple[int, int], ...]
    instruction_start: int
    query_chars: tuple[int, int]


def render_content(
    passages: Sequence[Passage], query: str, template: PromptTemplate = DEFAULT_TEMPLATE
) -> PromptText:
    """Build the user content for passages (already in prompt order) and a query."""
    parts: list[str] = [template.header]
    pos = len(template.header)
    ranges = []
    for number, passage in enumerate(passages, start=1):
        block = template.passage_block(number, passage)
        parts.append(template.separator)
        pos += len(template.separator)
        ranges.append((pos, pos + len(block)))
        parts.append(block)
        pos += len(block)
    parts.append(template.separator)
    pos += len(template.separator)
    instruction_start = pos
    tail = f"{template.instruction}{template.separator}{template.query_label} "
    parts.append(tail)
    pos += len(tail)
    parts.append(query)
    return PromptText("".join(parts), tuple(ranges), instruction_start, (pos, pos + len(query)))


@dataclass(frozen=True)
class TokenizedPrompt:
    """Token ids of a whole prompt and the token spans ``[start, end)`` of its pieces."""

    input_ids: tuple[int, ...]
    passage_spans: tuple[tuple[int, int], ...]
    query_span: tuple[int, int]
    suffix_start: int  # first token of the instruction: the query-independent prefix ends here

    def __len__(self) -> int:
        return len(self.input_ids)


class SpanError(RuntimeError):
    """The tokenizer's offsets could not be mapped onto the prompt pieces."""


def _encode(tokenizer: Any, text: str, **kwargs: Any) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, **kwargs)["input_ids"])


def _bos_ids(tokenizer: Any) -> list[int]:
    """The tokens the tokenizer itself puts in front of a text (usually BOS, often nothing)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(with_special)):
        if with_special[i:i + len(without)] == without:
            return list(with_special[:i])
    return []


def tokenize_prompt(
    tokenizer: Any, text: PromptText, frame: ChatFrame
) -> TokenizedPrompt:
    """Tokenize a prompt and map every piece to its exact token span."""
    if not getattr(tokenizer, "is_fast", False):
        raise SpanError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: exact passage spans need "
            "offset mappings (load the tokenizer with use_fast=True)"
        )
    if frame.add_special_tokens:
        head_ids = _bos_ids(tokenizer)
    else:
        head_ids = _encode(tokenizer, frame.before)
    tail_ids = _encode(tokenizer, frame.after)
    enc = tokenizer(
        text.content,
        add_special_tokens=False,
        return_offsets_mapping=True,
        split_special_tokens=True,
    )
    ids = list(enc["input_ids"])
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    content = text.content
    # A token's anchor is its first non-whitespace character: byte-level BPE merges the space before
    # a word into the word's token (" what"), and that space belongs to the piece before it.
    starts = np.array([
        s + (len(content[s:e]) - len(content[s:e].lstrip()) if content[s:e].strip() else 0)
        for s, e in offsets.tolist()
    ], dtype=np.int64)
    ends = offsets[:, 1]
    real = ends > offsets[:, 0]  # zero-length tokens belong to no piece

    def span(lo: int, hi: int, what: str) -> tuple[int, int]:
        # Tokens whose first character lies in [lo, hi); fall back to tokens overlapping it.
        idx = np.nonzero(real & (starts >= lo) & (starts < hi))[0]
        if idx.size == 0:
            idx = np.nonzero(real & (starts < hi) & (ends > lo))[0]
        if idx.size == 0:
            raise SpanError(f"no token covers the {what} (characters {lo}-{hi})")
        a, b = int(idx[0]), int(idx[-1]) + 1
        if b - a != idx.size:
            raise SpanError(f"tokens of the {what} are not contiguous")
        return a, b

    spans = [span(lo, hi, f"passage {i + 1}") for i, (lo, hi) in enumerate(text.passage_chars)]
    q = span(*text.query_chars, "query")
    after = np.nonzero(real & (starts >= text.instruction_start))[0]
    suffix = int(after[0]) if after.size else q[0]
    last_passage_end = spans[-1][1] if spans else 0
    suffix = max(suffix, last_passage_end)
    if suffix > q[0]:
        raise SpanError("the query's tokens start before the end of the passages")
    shift = len(head_ids)
    return TokenizedPrompt(
        input_ids=tuple(head_ids + ids + tail_ids),
        passage_spans=tuple((a + shift, b + shift) for a, b in spans),
        query_span=(q[0] + shift, q[1] + shift),
        suffix_start=suffix + shift,
    )


def build_prompt(
    tokenizer: Any,
    passages: Sequence[Passage],
    query: str,
    template: PromptTemplate = DEFAULT_TEMPLATE,
) -> TokenizedPrompt:
    """Render and tokenize one prompt (passages already in prompt order)."""
    return tokenize_prompt(tokenizer, render_content(passages, query, template), chat_frame(tokenizer, template))
