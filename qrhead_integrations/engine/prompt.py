"""The QRHead prompt and exact token spans of its passages and query.

The prompt follows the reference setup: passages first, each as ``[i] title\\ntext`` after
"Here are some paragraphs:", then the instruction and ``Query: ...``, wrapped in a chat frame. Spans are
computed from the tokenizer's offset mapping: every token belongs to the piece of the prompt that holds
its first non-whitespace character. The prompt string is never searched, so repeated text, ``[3]``
markers inside passages or a passage equal to the query cannot confuse the spans.

The chat frame (system/user header and assistant header) is tokenized with special tokens; the user
content is tokenized with ``split_special_tokens=True``, so a passage or query containing text such
as ``<|im_end|>`` is read as plain text and cannot break out of the user turn.

Thread safety: transformers keeps per-call flags such as ``split_special_tokens`` on the shared Rust
tokenizer, so two threads calling one tokenizer with different flags corrupt each other's output. Every
call here goes through :class:`SafeTokenizer`: a private copy of the caller's tokenizer used under a
lock (one per original tokenizer, shared process-wide), so neither our threads nor the caller's own use
of the tokenizer (e.g. a generator's) can interfere.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import QRHeadError, QRHeadTypeError, QRHeadValueError

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
            raise QRHeadTypeError(f"passage{where} is a mapping without a 'text' key")
        text, title = item["text"], item.get("title") or ""
    elif hasattr(item, "text"):
        text, title = item.text, getattr(item, "title", "") or ""
    elif hasattr(item, "page_content"):
        text, title = item.page_content, ""
    else:
        raise QRHeadTypeError(
            f"passage{where} has unsupported type {type(item).__name__}: "
            "expected str, a mapping with 'text' (and optional 'title'), or an object with .text"
        )
    if text is None:
        text = ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise QRHeadTypeError(f"passage{where}: text and title must be strings")
    return Passage(text, title)


def check_passages(passages: Any, what: str = "passages") -> list[Passage]:
    """The caller's passages as a list of :class:`Passage`, refusing containers that would be misread.

    A string would be iterated character by character, a mapping by its keys, a set in arbitrary order
    and a generator would be consumed: all are refused with a message that says what to pass instead.
    """
    if passages is None:
        raise QRHeadTypeError(f"{what} is None: pass a list of passages (strings or mappings with 'text')")
    if isinstance(passages, (str, bytes)):
        raise QRHeadTypeError(f"{what} is a single {type(passages).__name__}: pass a list of passages, "
                              f"e.g. [{passages[:30]!r}]")
    if isinstance(passages, Mapping):
        raise QRHeadTypeError(f"{what} is a mapping: pass a list of passages (its values, or one mapping "
                              "with 'text' per passage inside a list)")
    if isinstance(passages, (set, frozenset)):
        raise QRHeadTypeError(f"{what} is a set, which has no order: pass a list (results refer to input positions)")
    if not isinstance(passages, Sequence):
        kind = type(passages).__name__
        raise QRHeadTypeError(f"{what} must be a list or tuple, not {kind} (pass list(...) of it; results "
                              "refer to input positions)")
    return [as_passage(p, i) for i, p in enumerate(passages)]


class SpanError(QRHeadError, RuntimeError):
    """The tokenizer's offsets could not be mapped onto the prompt pieces."""


# --- thread-safe tokenizer --------------------------------------------------------------------------


class SafeTokenizer:
    """A private copy of a fast tokenizer, called under a lock (see the module docstring)."""

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise SpanError(
                f"{type(tokenizer).__name__} is not a fast tokenizer: exact passage spans need "
                "offset mappings (load the tokenizer with use_fast=True)"
            )
        self._tok = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()
        self._frames: dict[Any, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def encode(self, text: str, *, split_special: bool = True, offsets: bool = False,
               add_special_tokens: bool = False) -> tuple[list[int], list[tuple[int, int]] | None]:
        if not text:
            return [], [] if offsets else None
        with self._lock:
            enc = self._tok(text, add_special_tokens=add_special_tokens, split_special_tokens=split_special,
                            return_offsets_mapping=offsets)
        ids = list(enc["input_ids"])
        return ids, ([tuple(o) for o in enc["offset_mapping"]] if offsets else None)

    def count(self, text: str) -> int:
        """Tokens of ``text`` read as plain text (special-token strings are not special)."""
        return len(self.encode(text)[0])

    @property
    def chat_template(self) -> Any:
        return getattr(self._tok, "chat_template", None)

    def vocab_has(self, token: str) -> bool:
        with self._lock:
            return self._tok.convert_tokens_to_ids(token) not in (None, self._tok.unk_token_id)

    def chat_frame(self, template: PromptTemplate) -> ChatFrame:
        """The text around the user content: the template's explicit frame, else the chat template's."""
        if template.frame is not None:
            return ChatFrame(template.frame[0], template.frame[1], True)
        if template.use_chat_template and self.chat_template:
            with self._lock:
                rendered = self._tok.apply_chat_template(
                    [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True)
            if isinstance(rendered, str) and rendered.count(_SENTINEL) == 1:
                before, after = rendered.split(_SENTINEL)
                return ChatFrame(before, after, False)  # the chat template writes its own BOS
        return ChatFrame("", "", True)

    def frame_ids(self, template: PromptTemplate) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Token ids before and after the user content (computed once per template)."""
        key = (template.use_chat_template, template.frame)
        hit = self._frames.get(key)
        if hit is not None:
            return hit
        frame = self.chat_frame(template)
        head = (self._bos_ids() if frame.add_special_tokens else []) + self.encode(frame.before, split_special=False)[0]
        tail = self.encode(frame.after, split_special=False)[0]
        out = (tuple(head), tuple(tail))
        self._frames[key] = out
        return out

    def _bos_ids(self) -> list[int]:
        """The tokens the tokenizer itself puts in front of a text (usually BOS, often nothing)."""
        with_special = self.encode("a", add_special_tokens=True, split_special=False)[0]
        without = self.encode("a", split_special=False)[0]
        for i in range(len(with_special)):
            if with_special[i:i + len(without)] == without:
                return list(with_special[:i])
        return []


_SAFE: weakref.WeakKeyDictionary[Any, SafeTokenizer] = weakref.WeakKeyDictionary()
_SAFE_BY_ID: dict[int, tuple[Any, SafeTokenizer]] = {}
_SAFE_LOCK = threading.Lock()


def safe_tokenizer(tokenizer: Any) -> SafeTokenizer:
    """The process-wide :class:`SafeTokenizer` of ``tokenizer`` (created on first use)."""
    if isinstance(tokenizer, SafeTokenizer):
        return tokenizer
    with _SAFE_LOCK:
        try:
            hit = _SAFE.get(tokenizer)
        except TypeError:  # not weak-referenceable
            pair = _SAFE_BY_ID.get(id(tokenizer))
            hit = pair[1] if pair is not None and pair[0] is tokenizer else None
        if hit is None:
            hit = SafeTokenizer(tokenizer)
            try:
                _SAFE[tokenizer] = hit
            except TypeError:
                _SAFE_BY_ID[id(tokenizer)] = (tokenizer, hit)
        return hit


# --- templates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatFrame:
    """Text before and after the user content; ``add_special_tokens``: the tokenizer's own BOS goes first
    (prompts without a chat template, and explicit frames such as the authors')."""

    before: str
    after: str
    add_special_tokens: bool


def chat_frame(tokenizer: Any, template: PromptTemplate | None = None) -> ChatFrame:
    """The chat frame the prompt of ``template`` uses with ``tokenizer``."""
    return safe_tokenizer(tokenizer).chat_frame(template or DEFAULT_TEMPLATE)



@dataclass(frozen=True)
class PromptTemplate:
    """Wording and frame of the QRHead prompt. The defaults are the reference (QRHead/ICR) wording in the
    model's own chat template.

    ``frame``: explicit text before and after the user content (tokenized with special tokens, after the
    tokenizer's own BOS), instead of the model's chat template; ``use_chat_template=False`` and no frame:
    the content alone after BOS.
    """

    header: str = "Here are some paragraphs:"
    separator: str = "\n\n"
    instruction: str = (
        "Please find information that are relevant to the following query in the paragraphs above."
    )
    query_label: str = "Query:"
    use_chat_template: bool = True
    frame: tuple[str, str] | None = None
    name: str = "qrhead"
    version: str = TEMPLATE_VERSION

    def passage_block(self, number: int, passage: Passage) -> str:
        if passage.title:
            return f"[{number}] {passage.title}\n{passage.text}"
        return f"[{number}] {passage.text}"

    def block_text_offset(self, number: int, passage: Passage) -> int:
        """Where ``passage.text`` starts inside its block."""
        return len(self.passage_block(number, passage)) - len(passage.text)


DEFAULT_TEMPLATE = PromptTemplate()

#: The authors' frames (princeton-pli/QRHead ``get_prompt``): (before, after, separator), no system turn.
REFERENCE_FRAMES = {
    "chatml": ("<|im_start|>user", "<|im_end|>\n<|im_start|>assistant", "\n\n"),
    "llama3": ("<|start_header_id|>user<|end_header_id|>",
               "<|eot_id|><|start_header_id|>assistant<|end_header_id|>", " \n\n"),
}


def reference_template(tokenizer: Any) -> PromptTemplate:
    """The authors' exact prompt for this tokenizer's chat format (ChatML or Llama 3)."""
    tok = safe_tokenizer(tokenizer)
    if tok.vocab_has("<|im_start|>"):
        family = "chatml"
    elif tok.vocab_has("<|start_header_id|>"):
        family = "llama3"
    else:
        raise QRHeadValueError(
            "template='reference' reproduces the authors' ChatML and Llama-3 prompts; this tokenizer has "
            "neither format's special tokens (use template='qrhead', the model's own chat template)")
    before, after, sep = REFERENCE_FRAMES[family]
    return PromptTemplate(header=" Here are some paragraphs:", separator=sep, frame=(before, after),
                          name="reference", version=f"{TEMPLATE_VERSION}+reference-{family}")


def resolve_template(spec: str | PromptTemplate, tokenizer: Any) -> PromptTemplate:
    """A template name (``"qrhead"``, ``"reference"``) or object, made concrete for ``tokenizer``."""
    if isinstance(spec, PromptTemplate):
        return spec
    if spec == "qrhead":
        return DEFAULT_TEMPLATE
    if spec == "reference":
        return reference_template(tokenizer)
    raise QRHeadValueError(f"unknown template {spec!r}: use 'qrhead', 'reference' or a PromptTemplate")


# --- rendering and tokenizing -------------------------------------------------------------------------

_SENTINEL = "QRHEADUSERCONTENTSENTINEL"


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
    """Token ids of a whole prompt and the token spans ``[start, end)`` of its pieces.

    ``suffix_start`` is the first token after the passages (the instruction): the query-independent
    prefix ends there. The suffix rows (``suffix_start`` to the end) are instruction, query and chat tail.
    """

    input_ids: tuple[int, ...]
    passage_spans: tuple[tuple[int, int], ...]
    query_span: tuple[int, int]
    suffix_start: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def prefix(self) -> tuple[int, ...]:
        return self.input_ids[: self.suffix_start]

    @property
    def suffix(self) -> tuple[int, ...]:
        return self.input_ids[self.suffix_start:]


def _anchors(content: str, offsets: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor, end, real) per token: a token's anchor is its first non-whitespace character (byte-level
    BPE merges the space before a word into the word's token, and that space belongs to the piece before)."""
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts = np.array([
        s + (len(content[s:e]) - len(content[s:e].lstrip()) if content[s:e].strip() else 0)
        for s, e in off.tolist()
    ], dtype=np.int64)
    return starts, off[:, 1], off[:, 1] > off[:, 0]


def _span(starts: np.ndarray, ends: np.ndarray, real: np.ndarray, lo: int, hi: int, what: str) -> tuple[int, int]:
    """Tokens whose anchor lies in ``[lo, hi)`` (else tokens overlapping it), as one contiguous range."""
    idx = np.nonzero(real & (starts >= lo) & (starts < hi))[0]
    if idx.size == 0:
        idx = np.nonzero(real & (starts < hi) & (ends > lo))[0]
    if idx.size == 0:
        raise SpanError(f"no token covers the {what} (characters {lo}-{hi})")
    a, b = int(idx[0]), int(idx[-1]) + 1
    if b - a != idx.size:
        raise SpanError(f"tokens of the {what} are not contiguous")
    return a, b


def tokenize_prompt(tokenizer: Any, text: PromptText, template: PromptTemplate = DEFAULT_TEMPLATE) -> TokenizedPrompt:
    """Tokenize a prompt and map every piece to its exact token span."""
    return tokenize_prompt_offsets(tokenizer, text, template)[0]


def tokenize_prompt_offsets(tokenizer: Any, text: PromptText, template: PromptTemplate = DEFAULT_TEMPLATE
                            ) -> tuple[TokenizedPrompt, np.ndarray, np.ndarray]:
    """:func:`tokenize_prompt`, plus each prompt token's anchor and end character in the content (-1 and 0
    for the frame's tokens and zero-length tokens)."""
    tok = safe_tokenizer(tokenizer)
    head_ids, tail_ids = tok.frame_ids(template)
    ids, offsets = tok.encode(text.content, offsets=True)
    starts, ends, real = _anchors(text.content, offsets)
    spans = [_span(starts, ends, real, lo, hi, f"passage {i + 1}") for i, (lo, hi) in enumerate(text.passage_chars)]
    q = _span(starts, ends, real, *text.query_chars, "query")
    after = np.nonzero(real & (starts >= text.instruction_start))[0]
    suffix = int(after[0]) if after.size else q[0]
    suffix = max(suffix, spans[-1][1] if spans else 0)
    if suffix > q[0]:
        raise SpanError("the query's tokens start before the end of the passages")
    shift = len(head_ids)
    prompt = TokenizedPrompt(
        input_ids=tuple(head_ids) + tuple(ids) + tuple(tail_ids),
        passage_spans=tuple((a + shift, b + shift) for a, b in spans),
        query_span=(q[0] + shift, q[1] + shift),
        suffix_start=suffix + shift,
    )
    pad_head, pad_tail = np.full(shift, -1, dtype=np.int64), np.full(len(tail_ids), -1, dtype=np.int64)
    anchors = np.concatenate([pad_head, np.where(real, starts, -1), pad_tail])
    ends = np.concatenate([pad_head * 0, ends, pad_tail * 0])
    return prompt, anchors, ends


def build_prompt(
    tokenizer: Any,
    passages: Sequence[Passage],
    query: str,
    template: PromptTemplate = DEFAULT_TEMPLATE,
) -> TokenizedPrompt:
    """Render and tokenize one prompt (passages already in prompt order). Safe to call from many threads."""
    return tokenize_prompt(tokenizer, render_content(passages, query, template), template)


def query_suffix(tokenizer: Any, prompt: TokenizedPrompt, passages: Sequence[Passage], query: str,
                 template: PromptTemplate) -> TokenizedPrompt | None:
    """The prompt for ``query`` on the same passages as ``prompt``, re-tokenizing only the last passage
    and what follows it (the passages are not tokenized again).

    Returns None when the tokenizer would merge text across the prefix boundary differently for this
    query (then the caller tokenizes the whole prompt: exact, only slower).
    """
    if not passages:
        return None
    tok = safe_tokenizer(tokenizer)
    _, tail_ids = tok.frame_ids(template)
    last = passages[-1]
    block = template.passage_block(len(passages), last)
    sep = template.separator
    instruction_start = len(block) + len(sep)
    tail = f"{block}{sep}{template.instruction}{sep}{template.query_label} "
    content = tail + query
    ids, offsets = tok.encode(content, offsets=True)
    starts, ends, real = _anchors(content, offsets)
    after = np.nonzero(real & (starts >= instruction_start))[0]
    if after.size == 0:
        return None
    cut = int(after[0])
    a, b = prompt.passage_spans[-1]
    # The last passage and the separator must tokenize exactly as in the cached prefix.
    if tuple(ids[:cut]) != prompt.input_ids[a: prompt.suffix_start]:
        return None
    try:
        q0, q1 = _span(starts, ends, real, len(tail), len(content), "query")
    except SpanError:
        return None
    if q0 < cut:
        return None
    start = prompt.suffix_start
    return TokenizedPrompt(
        input_ids=prompt.input_ids[:start] + tuple(ids[cut:]) + tuple(tail_ids),
        passage_spans=prompt.passage_spans,
        query_span=(start + q0 - cut, start + q1 - cut),
        suffix_start=start,
    )
