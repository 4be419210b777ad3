"""Every chunk-selection setting in one frozen, validated object.

:class:`SelectionOptions` is to chunk selection what :class:`~qrhead_integrations.ScoringOptions` is to
scoring: the one place a setting is declared (default, accepted values, description).
:func:`~qrhead_integrations.chunks.select_chunks` reads one, both frameworks' chunk retrievers build one
(LangChain's pydantic fields and LlamaIndex's settings are generated from :func:`selection_specs`), and
docs/chunk_selection.md's table is generated from it. Adding a setting is one edit here (plus the code
that uses it).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .engine.errors import QRHeadTypeError, QRHeadValueError
from .engine.options import FirstStage, OptionSpec, replace_known, unpack_annotation

TokenCounter = Callable[[str], int]
#: Where chunks sit in the scorer's prompt (the engine's placements but ``'auto'``; None = the scorer's own).
ChunkOrder = Literal["reversed", "as_given", "both", "ranked"]
F = TypeVar("F", bound=Callable[..., Any])


def token_counter(counter: Any) -> TokenCounter:
    """A ``str -> int`` token counter from a callable or a Hugging Face (or tiktoken) tokenizer."""
    if callable(counter) and not hasattr(counter, "encode"):
        return counter
    if hasattr(counter, "encode"):
        def count(text: str) -> int:
            try:
                return len(counter.encode(text, add_special_tokens=False))
            except TypeError:  # tiktoken-style encoders
                return len(counter.encode(text))
        return count
    raise QRHeadTypeError("count_tokens must be a callable str -> int or a tokenizer with .encode")


def _setting(default: Any, description: str, accepted: str = "", **extra: Any) -> Any:
    """A declared setting; ``accepted`` is the phrase both the error message and the docs table use."""
    return field(default=default, metadata={"description": description, "accepted": accepted, **extra})


@dataclass(frozen=True)
class SelectionOptions:
    """How many chunks a selection keeps, how they are ordered, placed and trimmed (scoring excluded)."""

    top_k: int | None = _setting(
        None, "At most this many chunks (default 5 when no token_budget is given).", "a positive integer",
        minimum=1)
    token_budget: int | None = _setting(
        None, "Go down the ranking and keep each chunk that still fits the remaining budget (a chunk too long "
              "for what is left is skipped; shorter, lower-ranked ones may still fit). With top_k too, both "
              "limits apply.", "a positive integer", minimum=1)
    keep_document_order: bool = _setting(
        False, "Return the chosen chunks in document order (by offset) instead of best first.")
    count_tokens: Any | None = _setting(
        None, "How the budget is counted: a str -> int callable or a tokenizer with .encode (Hugging Face or "
              "tiktoken), e.g. the generator's. None = the scorer's tokenizer. A live object: not serialised.",
        "a `str -> int` callable, a tokenizer", check=token_counter, serialised=False)
    candidate_order: ChunkOrder | None = _setting(
        "as_given", "How the chunks are laid out in the scorer's prompt: 'as_given' (the document's reading "
                    "order), 'reversed', 'both' or 'ranked' as for re-ranking, None (the scorer's own setting). "
                    "The caller's scorer is not changed.")
    trim_to_evidence: int | None = _setting(
        None, "Keep only this many sentences of each chosen chunk, those with the most of the heads' mass, "
              "each widened by evidence_context neighbours; the budget counts the kept text.",
        "a positive number of sentences", minimum=1)
    evidence_context: int = _setting(
        1, "Neighbouring sentences kept on each side of an evidence sentence (0 = the evidence alone).",
        "a number of sentences >= 0", minimum=0)
    first_stage: FirstStage | None = _setting(
        "auto", "What the ranking fuses with when no first_stage_scores are given: 'auto' (the scorer's "
                "setting: BM25 over the chunks for the embedded default, the heads alone for head sets that "
                "recommend no fusion), 'bm25' (always; an error with fusion=None), 'order' (the document "
                "position read as a ranking) or None (the heads alone).")

    def __post_init__(self) -> None:
        for spec in selection_specs():
            _check(spec, getattr(self, spec.name))

    def replace(self, **changes: Any) -> SelectionOptions:
        """A copy with ``changes`` applied (validated); unknown names are an error."""
        return replace_known(self, changes, SELECTION_NAMES, "chunk-selection setting(s)")

    @classmethod
    def build(cls, options: SelectionOptions | None = None, **settings: Any) -> SelectionOptions:
        """``options`` (default: all defaults) with ``settings`` applied: what every selection entry point takes."""
        return (options if options is not None else DEFAULT_SELECTION).replace(**settings)

    def to_dict(self) -> dict[str, Any]:
        """The serialisable settings (``count_tokens``, a live object, is left out)."""
        return {s.name: getattr(self, s.name) for s in selection_specs() if s.serialised}


@dataclass(frozen=True)
class SelectionSpec(OptionSpec):
    """One setting as the adapters, the docs and the validation see it."""

    accepted: str = ""
    check: Callable[[Any], Any] | None = None
    serialised: bool = True


_SPECS: list[SelectionSpec] = []


def selection_specs() -> list[SelectionSpec]:
    """Every chunk-selection setting, in declaration order."""
    if not _SPECS:
        hints = typing.get_type_hints(SelectionOptions)
        for f in dataclasses.fields(SelectionOptions):
            kind, choices, nullable = unpack_annotation(hints[f.name])
            meta = f.metadata
            _SPECS.append(SelectionSpec(
                f.name, f.default, hints[f.name], kind, choices, nullable, meta["description"], meta.get("minimum"),
                accepted=meta["accepted"] or _accepted(kind, choices), check=meta.get("check"),
                serialised=meta.get("serialised", True)))
    return list(_SPECS)


def _accepted(kind: Any, choices: tuple[str, ...] | None) -> str:
    if choices:
        return "one of " + ", ".join(repr(c) for c in choices)
    return "True or False" if kind is bool else ""


def _check(spec: SelectionSpec, value: Any) -> None:
    """Raise the setting's error unless ``value`` is accepted (a ValueError, as select_chunks always raised)."""
    if value is None and spec.nullable:
        return
    if spec.check is not None:
        spec.check(value)
        return
    if spec.choices is not None:
        ok = isinstance(value, str) and value in spec.choices
    elif spec.kind is bool:
        ok = isinstance(value, bool)
    else:
        ok = (isinstance(value, int) and not isinstance(value, bool)
              and (spec.minimum is None or value >= spec.minimum))
    if not ok:
        raise QRHeadValueError(f"{spec.name} must be {spec.accepted}{' or None' if spec.nullable else ''}, "
                               f"not {value!r}")


SELECTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SelectionOptions))
DEFAULT_SELECTION = SelectionOptions()


def with_settings_signature(rename: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Show every setting as a keyword in place of a function's ``**settings`` (``help()``, ``inspect`` and
    editors that read ``__signature__``), so the settings are listed without being written out again."""
    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params += [inspect.Parameter((rename or {}).get(s.name, s.name), inspect.Parameter.KEYWORD_ONLY,
                                     default=s.default, annotation=s.annotation) for s in selection_specs()]
        func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return func
    return decorate


def selection_markdown() -> str:
    """The settings as a Markdown table (docs/chunk_selection.md embeds it; a test keeps the two equal)."""
    rows = ["| setting | default | accepted | meaning |", "|---|---|---|---|"]
    for s in selection_specs():
        accepted = ", ".join(f"`{c!r}`" for c in s.choices) if s.choices else s.accepted
        accepted += ", `None`" if s.nullable and s.choices else " or `None`" if s.nullable else ""
        rows.append(f"| `{s.name}` | `{s.default!r}` | {accepted} | {s.description} |")
    return "\n".join(rows)
