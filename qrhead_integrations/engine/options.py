"""Every scoring option in one frozen, validated object.

:class:`ScoringOptions` is the single place an option is declared: its default, its accepted values and
its description. The scorer takes one, the framework adapters build their pydantic fields from
:func:`option_specs`, the CLI builds its flags from it, and the docs table is generated from it. Adding
an option is one edit here (plus the code that uses it). Options never change after construction:
``scorer.with_options(**changes)`` returns a new scorer on the same weights.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from .errors import QRHeadTypeError, QRHeadValueError

CandidateOrder = Literal["auto", "reversed", "as_given", "both", "ranked"]
QueryRows = Literal["auto", "query", "suffix"]
TokenFilter = Literal["auto", "2sigma"]
HeadReduction = Literal["mean", "sum"]
Fusion = Literal["auto", "rrf", "linear"]
FirstStage = Literal["auto", "bm25", "order"]
#: ``first_stage`` values besides None.
FIRST_STAGES: tuple[str, ...] = typing.get_args(FirstStage)
TemplateName = Literal["auto", "qrhead", "reference"]
T = TypeVar("T")

#: What ``"auto"`` means for the scoring-variant options when the head set recommends nothing.
VARIANT_FALLBACK: dict[str, Any] = {"query_rows": "query", "token_filter": None, "template": "qrhead"}


def _option(default: Any, description: str, **extra: Any) -> Any:
    return field(default=default, metadata={"description": description, **extra})


@dataclass(frozen=True)
class ScoringOptions:
    """How passages are placed, scored, calibrated, fused and cut off (model and heads excluded)."""

    candidate_order: CandidateOrder = _option(
        "auto",
        "Where passages sit in the prompt: 'ranked' (by their first-stage scores, the given ones or what "
        "first_stage computes, best next to the query, equal scores by content: the same prompt for any input "
        "order), 'reversed' (the first input next to the query, the reference setup), 'as_given' (the first "
        "input first), 'both' (mean of 'reversed' and 'as_given'; twice the cost) or 'auto' (the head set's "
        "recommendation, else 'reversed').")
    calibrate: bool = _option(
        True, "Subtract the attention mass of the null query (the QRHead calibration).")
    null_query: str = _option("N/A", "The content-free query used for calibration.")
    query_rows: QueryRows = _option(
        "auto",
        "Which prompt rows read the passages: 'query' (the query's own tokens, the paper's equation 2), "
        "'suffix' (every token after the passages: instruction, query and chat-template tail, as the "
        "authors' code does) or 'auto' (what the head set was detected with: 'suffix' for the authors' "
        "published sets, else 'query').")
    token_filter: TokenFilter | None = _option(
        "auto",
        "Per-passage token filter: None (sum every token), '2sigma' (drop tokens whose calibrated, "
        "head-aggregated mass is below the passage's mean minus two standard deviations, as the authors' "
        "code does) or 'auto' (the head set's: '2sigma' for the authors' published sets, else None).")
    head_reduction: HeadReduction = _option(
        "mean", "How the selected heads' masses combine: 'mean' (weighted mean) or 'sum' (the authors' code; "
                "the same ranking, another scale).")
    template: TemplateName = _option(
        "auto",
        "Prompt wording and frame: 'qrhead' (the model's own chat template), 'reference' (the authors' "
        "exact strings: ChatML or Llama-3 frame, no system turn) or 'auto' (the head set's: 'reference' for "
        "the authors' published sets, else 'qrhead'). A PromptTemplate object is also accepted by the engine.")
    max_context_tokens: int | None = _option(
        None, "Token budget of one prompt; longer inputs are split into windows whose scores stay comparable. "
              "None = the model's context length. At least 32 (the template alone needs about that).", minimum=32)
    max_passage_tokens: int | None = _option(
        None, "Truncate each passage to this many tokens before scoring (flagged on the result, never "
              "silent). None = no truncation.", minimum=1)
    max_query_tokens: int = _option(
        256, "Longest query (tokens) that encode() reserves room for when it plans windows.", minimum=1)
    fusion: Fusion | None = _option(
        "auto", "How the QRHead score is fused with a first stage (given first_stage_scores, or the one "
                "first_stage names): 'auto' (what the head set recommends, measured for its model), 'linear' "
                "(min-max normalised scores), 'rrf' (reciprocal rank) or None (never fuse: the heads alone, "
                "even when first-stage scores are given).")
    fusion_weight: float | None = _option(
        None, "QRHead share of the fused score (the first stage gets 1 - fusion_weight). None = the head set's "
              "recommendation, else 0.5.", minimum=0.0, maximum=1.0)
    first_stage: FirstStage | None = _option(
        "auto", "What a ranking fuses with when the caller gives no first_stage_scores: 'bm25' (BM25 over "
                "the given passages themselves: order-free), 'order' (the input order read as a ranking, best "
                "first: only for callers whose input is one), None (the heads alone) or 'auto' (the head "
                "set's recommendation, else 'bm25' when the head set recommends a fusion and None when not; "
                "None with fusion=None). Given first_stage_scores always take its place.")
    rrf_k: int = _option(60, "The k of reciprocal-rank fusion.", minimum=1)
    score_threshold: float | None = _option(
        None, "Drop results whose final score is below this value. None = keep all.")
    relative_score_threshold: float | None = _option(
        None, "Drop results whose min-max normalised final score (1 = the best result, 0 = the worst) is "
              "below this fraction. None = keep all.", minimum=0.0, maximum=1.0)
    show_progress: bool = _option(False, "Show progress bars on long jobs (many queries).")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _validate(f, getattr(self, f.name)))

    def replace(self, **changes: Any) -> ScoringOptions:
        """A copy with ``changes`` applied (validated); unknown names are an error."""
        return replace_known(self, changes, OPTION_NAMES, "scoring option(s)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly values (a PromptTemplate object is written as its name)."""
        out = {}
        for name in OPTION_NAMES:
            value = getattr(self, name)
            out[name] = getattr(value, "name", value) if name == "template" else value
        return out

    @property
    def variant(self) -> dict[str, Any]:
        """The options that change what a head's mass means (recorded in head sets made with them)."""
        return {"query_rows": self.query_rows, "token_filter": self.token_filter,
                "calibrate": self.calibrate, "template": self.to_dict()["template"]}

    def resolved(self, recommended: Mapping[str, Any] | None = None) -> ScoringOptions:
        """These options with every ``"auto"`` (and ``fusion_weight=None``) replaced by a head set's
        recommendation (``HeadSet.info["recommended_options"]``), else by no fusion, 0.5, no computed first
        stage, the ``'reversed'`` placement and :data:`VARIANT_FALLBACK`. A computed first stage (``"bm25"``, ``"order"``) needs a
        fusion: with ``fusion="auto"`` and none recommended it is linear; an explicit ``fusion=None``
        is an error."""
        rec = dict(recommended or {})
        fusion = rec.get("fusion") if self.fusion == "auto" else self.fusion
        weight = self.fusion_weight if self.fusion_weight is not None else rec.get("fusion_weight", 0.5)
        first_stage = self.first_stage
        if first_stage == "auto":  # an explicit fusion=None means the heads alone, whatever the set recommends
            first_stage = rec.get("first_stage", "bm25") if fusion is not None else None
        if first_stage is not None and fusion is None:
            if self.fusion is None:
                raise QRHeadValueError(f"first_stage={first_stage!r} fuses its scores with the heads' scores, but "
                                       "fusion=None: use fusion='auto', 'linear' or 'rrf', or first_stage=None")
            fusion = "linear"
        variant = {name: rec.get(name, fallback) for name, fallback in VARIANT_FALLBACK.items()
                   if getattr(self, name) == "auto"}
        if self.candidate_order == "auto":
            variant["candidate_order"] = rec.get("candidate_order", "reversed")
        return dataclasses.replace(self, fusion=fusion, fusion_weight=float(weight), first_stage=first_stage,
                                   **variant)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **more: Any) -> ScoringOptions:
        return cls().replace(**{**dict(values or {}), **more})


def replace_known(obj: T, changes: Mapping[str, Any], names: tuple[str, ...], what: str) -> T:
    """``dataclasses.replace(obj, **changes)`` (``obj`` itself when nothing changes); a name not in ``names``
    is a :class:`QRHeadTypeError` that lists the valid ones (``what``: e.g. ``"scoring option(s)"``)."""
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise QRHeadTypeError(f"unknown {what} {', '.join(unknown)}; valid: {', '.join(names)}")
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]


@dataclass(frozen=True)
class OptionSpec:
    """One option as adapters and the CLI see it."""

    name: str
    default: Any
    annotation: Any  # a plain type for pydantic (Literal[...] | None, int | None, ...)
    kind: type  # bool, int, float or str
    choices: tuple[str, ...] | None
    nullable: bool
    description: str
    minimum: float | None = None
    maximum: float | None = None


def unpack_annotation(annotation: Any) -> tuple[type, tuple[str, ...] | None, bool]:
    """(base kind, literal choices, nullable) of an annotation such as ``Literal['a', 'b'] | None``."""
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    nullable = type(None) in args
    args = tuple(a for a in args if a is not type(None))
    (base,) = args
    if typing.get_origin(base) is Literal:
        return str, tuple(typing.get_args(base)), nullable
    return base, None, nullable


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def option_specs() -> list[OptionSpec]:
    """Every scoring option, in declaration order."""
    hints = typing.get_type_hints(ScoringOptions)
    out = []
    for f in dataclasses.fields(ScoringOptions):
        kind, choices, nullable = unpack_annotation(hints[f.name])
        out.append(OptionSpec(f.name, f.default, hints[f.name], kind, choices, nullable,
                              f.metadata["description"], f.metadata.get("minimum"), f.metadata.get("maximum")))
    return out


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ScoringOptions))
_SPECS: dict[str, OptionSpec] = {}


def _validate(f: dataclasses.Field, value: Any) -> Any:
    if not _SPECS:
        _SPECS.update({s.name: s for s in option_specs()})
    spec = _SPECS[f.name]
    name = f.name
    if value is None:
        if spec.nullable:
            return None
        raise QRHeadValueError(f"{name} must not be None")
    if name == "template" and not isinstance(value, str):
        from .prompt import PromptTemplate

        if isinstance(value, PromptTemplate):
            return value
        raise QRHeadTypeError(f"template must be one of {spec.choices} or a PromptTemplate, not {type(value).__name__}")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise QRHeadTypeError(f"{name} must be True or False, not {value!r}")
        return value
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise QRHeadTypeError(f"{name} must be an integer{' or None' if spec.nullable else ''}, not {value!r}")
    elif spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise QRHeadTypeError(f"{name} must be a number{' or None' if spec.nullable else ''}, not {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise QRHeadValueError(f"{name} must be a finite number, not {value!r}")
    elif spec.kind is str:
        if not isinstance(value, str):
            raise QRHeadTypeError(f"{name} must be a string, not {type(value).__name__}")
        if spec.choices is not None and value not in spec.choices:
            allowed = ", ".join(repr(c) for c in spec.choices) + (" or None" if spec.nullable else "")
            raise QRHeadValueError(f"{name} must be one of {allowed}, not {value!r}")
        if name == "null_query" and not value.strip():
            raise QRHeadValueError("null_query must not be empty (the default is 'N/A')")
    if spec.minimum is not None and value < spec.minimum:
        raise QRHeadValueError(f"{name} must be at least {spec.minimum:g}, not {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise QRHeadValueError(f"{name} must be at most {spec.maximum:g}, not {value!r}")
    return value


DEFAULT_OPTIONS = ScoringOptions()


def options_markdown() -> str:
    """The options as a Markdown table (docs/engine.md embeds it; a test keeps the two equal)."""
    rows = ["| option | default | accepted | meaning |", "|---|---|---|---|"]
    for s in option_specs():
        if s.choices:
            accepted = ", ".join(f"`{c!r}`" for c in s.choices) + (", `None`" if s.nullable else "")
        else:
            kind = {bool: "bool", int: "int", float: "float", str: "str"}[s.kind]
            bounds = []
            if s.minimum is not None:
                bounds.append(f">= {s.minimum:g}")
            if s.maximum is not None:
                bounds.append(f"<= {s.maximum:g}")
            accepted = kind + (" " + ", ".join(bounds) if bounds else "") + (" or `None`" if s.nullable else "")
        rows.append(f"| `{s.name}` | `{s.default!r}` | {accepted} | {s.description} |")
    return "\n".join(rows)
