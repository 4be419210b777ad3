"""What the framework adapters share: their settings as pydantic fields, the scorer built from them, and
first-stage scores.

:class:`ScorerConfig` is a pydantic model whose fields are the model-loading settings plus every
:class:`~qrhead_integrations.engine.options.ScoringOptions` field, generated from the options
themselves (type, default, accepted values, description): an option added to the engine appears in both
frameworks' classes, with the same validation. The LlamaIndex and LangChain classes inherit from it next
to their framework base class.

The scorer is built from the fields on first use. Its model comes from the engine's process-wide cache,
so every adapter, chunk retriever and scorer configured for the same model shares one copy of the
weights; when a setting changes, the next call builds a new scorer (cheap: the weights stay cached).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    create_model,
    field_validator,
)
from typing_extensions import Self

from .chunks import Chunk, ChunkSelection, DocumentChunks, select_chunks, selection_scorer
from .engine.batch import shared_encoding
from .engine.heads import HeadSet, parse_head_list
from .engine.load_options import LOAD_OPTION_NAMES, load_specs
from .engine.options import OPTION_NAMES, ScoringOptions, TemplateName, option_specs, options_markdown
from .engine.ranking import RankedPassage, check_query
from .engine.scoring import EncodedPassages, QRHeadScorer
from .selection_options import SelectionOptions, selection_markdown, selection_specs, with_settings_signature

HeadsField = str | list[tuple[int, int]] | None
logger = logging.getLogger("qrhead_integrations")

HEADS_DESCRIPTION = ("Heads that score: None = the set registered for the model; 'all'; 'random:K[:SEED]'; a "
                     "registered variant name; a head-set JSON path; '13-18,13-21'; or a list of (layer, head).")


def _loader_fields() -> dict[str, tuple[Any, Any, str]]:
    """``model``, ``heads``, then every other loading setting: (annotation, default, description), generated
    from :func:`~qrhead_integrations.engine.load_options.load_specs`."""
    specs = {spec.name: (spec.annotation, spec.default, spec.description) for spec in load_specs()}
    return {"model": specs.pop("model"), "heads": (HeadsField, None, HEADS_DESCRIPTION), **specs}


#: Model-loading settings (:class:`~qrhead_integrations.engine.load_options.LoadOptions`) plus ``heads``.
LOADER_FIELDS: dict[str, tuple[Any, Any, str]] = _loader_fields()
LOAD_NAMES = tuple(LOADER_FIELDS)
#: Options the adapters expose (all but the progress bar, which is the engine's business).
ADAPTER_OPTION_NAMES = tuple(n for n in OPTION_NAMES if n != "show_progress")
SCORER_FIELDS = LOAD_NAMES + ADAPTER_OPTION_NAMES
#: Settings stored in a normal, JSON-friendly form (see :func:`normalize_field`).
NORMALIZED_FIELDS = ("heads", "model", "dtype", "device")


def normalize_heads(value: Any) -> Any:
    """Make a ``heads=`` value JSON-friendly: a HeadSet or a sequence of ``(layer, head)`` pairs or
    ``"layer-head"`` strings becomes a list of ``(layer, head)``; paths become strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, HeadSet):
        return [tuple(h) for h in value.heads]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [tuple(h) for h in parse_head_list(value)]  # (layer, head) pairs or "layer-head" strings
    return value


def normalize_field(name: str, value: Any) -> Any:
    """The stored form of a scorer setting: what a pydantic ``mode="before"`` validator returns."""
    if name == "heads":
        return normalize_heads(value)
    if name == "model" and isinstance(value, os.PathLike):
        return os.fspath(value)
    if name == "dtype" and value is not None and not isinstance(value, str):
        return str(value).removeprefix("torch.")
    if name == "device" and value is not None:
        return str(value)
    return value


@dataclass
class _Pinned:
    """An already loaded model a scorer was handed over with (``from_scorer``): reused, never reloaded."""

    model: Any
    tokenizer: Any
    name: str


class ScorerSlot:
    """The scorer of one adapter instance, (re)built from its settings when they change. Thread-safe.

    Held in a pydantic ``PrivateAttr``; pickling drops the scorer (it is rebuilt, from the process-wide
    model cache, on first use after unpickling).
    """

    def __init__(self) -> None:
        self.scorer: QRHeadScorer | None = None
        self.key: str | None = None
        self.pinned: _Pinned | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"scorer": None, "key": None, "pinned": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @staticmethod
    def key_of(settings: dict[str, Any]) -> str:
        return json.dumps(settings, sort_keys=True, default=str)

    def pin(self, scorer: QRHeadScorer, settings: dict[str, Any], *, as_is: bool = True) -> None:
        """Reuse ``scorer``'s model for every later scorer; with ``as_is``, use ``scorer`` itself while the
        settings stay ``settings`` (else the first use builds one with the settings, on the same model)."""
        self.pinned = _Pinned(scorer.model, scorer.tokenizer, scorer.model_name)
        if as_is:
            self.scorer, self.key = scorer, self.key_of(settings)
        else:
            self.scorer, self.key = None, None

    def get(self, settings: dict[str, Any]) -> QRHeadScorer:
        key = self.key_of(settings)
        with self._lock:
            if self.scorer is not None and self.key == key:
                return self.scorer
            options = ScoringOptions.from_mapping({name: settings[name] for name in ADAPTER_OPTION_NAMES})
            if self.pinned is not None and settings["model"] == self.pinned.name:
                scorer = QRHeadScorer(self.pinned.model, self.pinned.tokenizer, settings["heads"], options=options,
                                      model_name=self.pinned.name)
            else:
                loader = {name: settings[name] for name in LOAD_OPTION_NAMES if name != "model"}
                scorer = QRHeadScorer.from_pretrained(settings["model"], settings["heads"], options=options, **loader)
            self.scorer, self.key = scorer, key
            return scorer


def _option_field(spec: Any) -> tuple[Any, Any]:
    annotation = spec.annotation
    if spec.name == "template":
        annotation = TemplateName  # names only (the engine also takes PromptTemplate objects)
    extra: dict[str, Any] = {}
    if spec.minimum is not None:
        extra["ge"] = spec.minimum
    if spec.maximum is not None:
        extra["le"] = spec.maximum
    if spec.kind is bool:
        annotation = bool  # strict: "no" or 1 are not booleans (pydantic's lax mode would accept them)
        extra["strict"] = True
    if spec.kind is int and not spec.nullable:
        extra["strict"] = True
    return annotation, Field(default=spec.default, description=spec.description, **extra)


def selection_fields(rename: Mapping[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """Every :class:`~qrhead_integrations.selection_options.SelectionOptions` setting as a pydantic field
    definition (for ``create_model``), validated as the options are: strict integers and booleans, the
    minimum as ``ge``, live objects (``count_tokens``) left out of serialisation. ``rename`` gives a setting
    a framework's own name; the setting's name stays accepted as an alias (LangChain's ``k`` / ``top_k``)."""
    fields = {}
    for spec in selection_specs():
        name = (rename or {}).get(spec.name, spec.name)
        extra: dict[str, Any] = {"strict": True} if spec.kind in (bool, int) else {}
        if spec.minimum is not None:
            extra["ge"] = spec.minimum
        if not spec.serialised:
            extra["exclude"] = True
        if name != spec.name:
            extra["validation_alias"] = AliasChoices(name, spec.name)
        fields[name] = (spec.annotation, Field(default=spec.default, description=spec.description, **extra))
    return fields


class _ScorerConfigBase(BaseModel):
    """Loading settings; the option fields are added by :data:`ScorerConfig`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    _slot: ScorerSlot = PrivateAttr(default_factory=ScorerSlot)

    @field_validator(*NORMALIZED_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _normalize(cls, value: Any, info: ValidationInfo) -> Any:
        return normalize_field(info.field_name, value)

    @field_validator("max_context_tokens", "max_passage_tokens", "rrf_k", mode="before", check_fields=False)
    @classmethod
    def _no_bools(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be an integer, not {value!r}")
        return value

    @field_validator("null_query", mode="after", check_fields=False)
    @classmethod
    def _null_query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("null_query must not be empty (the default is 'N/A')")
        return value

    def scorer_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCORER_FIELDS}

    def scoring_options(self) -> ScoringOptions:
        """The engine options these fields describe."""
        return ScoringOptions.from_mapping({name: getattr(self, name) for name in ADAPTER_OPTION_NAMES})

    @property
    def scorer(self) -> QRHeadScorer:
        """The engine scorer for the current settings (loaded on first use, model shared process-wide)."""
        return self._slot.get(self.scorer_settings())

    def load(self) -> Self:
        """Load the scorer model now instead of on the first query; returns ``self``."""
        _ = self.scorer
        return self

    @classmethod
    def from_scorer(cls, scorer: QRHeadScorer, **kwargs: Any) -> Self:
        """Wrap an existing scorer (e.g. one built with ``QRHeadScorer.from_model`` on the generator's
        weights). Its settings become this object's fields; its model is reused, never reloaded."""
        own = settings_of_scorer(scorer)
        fields = {**own, **kwargs}
        self = cls(**fields)
        # settings given here that differ from the scorer's (e.g. fusion=None) give a new scorer on its model
        same = all(fields[name] == own[name] for name in kwargs if name in own)
        self._slot.pin(scorer, self.scorer_settings(), as_is=same)
        return self


ScorerConfig: type[_ScorerConfigBase] = create_model(  # type: ignore[call-overload]
    "ScorerConfig",
    __base__=_ScorerConfigBase,
    __doc__="Scorer settings as pydantic fields: model loading plus every scoring option.",
    **{name: (annotation, Field(default=default, description=desc))
       for name, (annotation, default, desc) in LOADER_FIELDS.items()},
    **{spec.name: _option_field(spec) for spec in option_specs() if spec.name in ADAPTER_OPTION_NAMES},
)


def settings_of_scorer(scorer: QRHeadScorer) -> dict[str, Any]:
    """Field values that describe ``scorer`` (for ``from_scorer``)."""
    out: dict[str, Any] = {
        "model": scorer.model_name,
        "heads": [tuple(h) for h in scorer.heads.heads],
        "device": str(scorer.device),
        "dtype": normalize_field("dtype", getattr(scorer.model, "dtype", None)),
    }
    options = scorer.options.to_dict()
    if not isinstance(options["template"], str) or options["template"] not in typing.get_args(TemplateName):
        raise ValueError("from_scorer: a scorer with a custom PromptTemplate object cannot be described by "
                         "adapter settings (use template='auto', 'qrhead' or 'reference')")
    out.update({k: v for k, v in options.items() if k != "show_progress"})
    return out


def copy_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a metadata dict (what frameworks' splitters do), so nested values (lists, dicts)
    of a returned object are not shared with the caller's; values that cannot be deep-copied are shared."""
    try:
        return copy.deepcopy(metadata)
    except Exception:
        return {key: _copy_value(value) for key, value in metadata.items()}


def _copy_value(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def first_stage_scores(scores: Sequence[Any]) -> list[float] | None:
    """The first-stage scores when every candidate has a finite one, else None: the scorer then applies
    its ``first_stage`` option (the default: BM25 over the candidates), never the input order (a
    documented fallback, logged when only some candidates lack a usable score)."""
    values = []
    bad = 0
    for s in scores:
        f = None
        if s is not None and not isinstance(s, bool):
            try:
                f = float(s)
            except (TypeError, ValueError):
                f = None
        if f is None or not math.isfinite(f):
            bad += 1
        else:
            values.append(f)
    if bad == 0:
        return values
    if values:
        logger.info("%d of %d candidates have no finite first-stage score: the scorer's first_stage option "
                    "stands in for the first stage", bad, bad + len(values))
    return None


# --- several queries at once -------------------------------------------------------------------------


class _SharedScorer:
    """What :func:`~qrhead_integrations.chunks.select_chunks` needs of a scorer, answering ``rank`` from
    one shared encoding of the chunks (anything else goes to the real scorer)."""

    def __init__(self, scorer: QRHeadScorer, encoded: EncodedPassages | None, texts: list[str]) -> None:
        self.scorer = scorer
        self.encoded = encoded
        self.texts = texts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    @property
    def options(self) -> ScoringOptions:
        return self.scorer.options

    def with_options(self, **changes: Any) -> _SharedScorer:
        return _SharedScorer(self.scorer.with_options(**changes), None, self.texts)

    def rank(self, query: str, passages: Sequence[Any], top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None, **extra: Any) -> list[RankedPassage]:
        if self.encoded is not None and list(passages) == self.texts:
            return self.encoded.rank(query, top_k, first_stage_scores, **extra)
        return self.scorer.rank(query, passages, top_k=top_k, first_stage_scores=first_stage_scores, **extra)


@with_settings_signature()
def select_many(scorer: QRHeadScorer, queries: Sequence[str], chunks: Sequence[Chunk], *,
                return_exceptions: bool = False, first_stage_scores: Sequence[float] | None = None,
                options: SelectionOptions | None = None, **settings: Any) -> list[ChunkSelection | Exception]:
    """``[select_chunks(scorer, q, chunks, ...) for q in queries]`` with one encoding of the chunks for all
    queries (when they fit one prompt; else query by query). Results are exactly those of the single
    calls. ``return_exceptions`` as in :func:`~.engine.batch.rank_jobs`."""
    options = SelectionOptions.build(options, **settings)
    chunks = list(chunks)
    out: list[Any] = []
    valid = []
    for q in queries:
        try:
            valid.append(check_query(q))
        except Exception:
            if not return_exceptions:
                raise
    scorer = selection_scorer(scorer, options.candidate_order, first_stage=options.first_stage,
                              first_stage_scores=first_stage_scores)
    texts = [c.text for c in chunks if isinstance(c, Chunk)]
    encoded = None
    if len(valid) > 1 and texts and len(texts) == len(chunks):
        try:
            encoded = shared_encoding(scorer, texts, valid)
        except Exception:
            encoded = None
    shared = _SharedScorer(scorer, encoded, texts)
    for q in queries:
        try:
            out.append(select_chunks(shared, q, chunks, first_stage_scores=first_stage_scores, options=options))
        except Exception as exc:
            if not return_exceptions:
                raise
            out.append(exc)
    return out


class ChunkCache(DocumentChunks):
    """:class:`~qrhead_integrations.chunks.DocumentChunks` that survives pickling (the located chunks are
    dropped and found again on first use)."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        DocumentChunks.__init__(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> ChunkCache:
        return ChunkCache()


def evidence_metadata(r: RankedPassage) -> list[dict[str, Any]]:
    """A result's evidence sentences as JSON-friendly metadata (character offsets into the passage text)."""
    return [{"start": e.start, "end": e.end, "share": round(e.share, 4), "text": e.text} for e in r.evidence]


# --- documentation ---------------------------------------------------------------------------------

TABLE_START = "<!-- scorer-options-table: generated by `python -m qrhead_integrations._adapter`; do not edit -->"
TABLE_END = "<!-- scorer-options-table: end -->"
DOC_FILES = ("docs/llama_index.md", "docs/langchain.md")


def _default_text(value: Any) -> str:
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_table() -> str:
    """The markdown table of every scorer field (loading settings, then the engine's scoring options),
    generated from :data:`LOADER_FIELDS` and :func:`~qrhead_integrations.engine.options.option_specs`."""
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for name, (_, default, description) in LOADER_FIELDS.items():
        rows.append(f"| `{name}` | {_default_text(default)} | {_cell(description)} |")
    for spec in option_specs():
        if spec.name in ADAPTER_OPTION_NAMES:
            rows.append(f"| `{spec.name}` | {_default_text(spec.default)} | {_cell(spec.description)} |")
    return "\n".join(rows)


def _render_between(text: str, start_marker: str, end_marker: str, table: str, pad: str = "\n") -> str:
    start, end = text.index(start_marker), text.index(end_marker)
    return text[:start] + start_marker + pad + table + pad + text[end:]


def render_options_section(text: str) -> str:
    """``text`` with the generated table between its markers replaced by the current one."""
    return _render_between(text, TABLE_START, TABLE_END, options_table(), "\n\n")


ENGINE_DOC = "docs/engine.md"
ENGINE_TABLE_START = "<!-- options-table (generated from ScoringOptions: `python -m qrhead_integrations._adapter`) -->"
ENGINE_TABLE_END = "<!-- /options-table -->"


def render_engine_options(text: str) -> str:
    """docs/engine.md's text with its ScoringOptions table (between its markers) replaced by the current one."""
    return _render_between(text, ENGINE_TABLE_START, ENGINE_TABLE_END, options_markdown())


SELECTION_DOC = "docs/chunk_selection.md"
SELECTION_TABLE_START = ("<!-- selection-options-table (generated from SelectionOptions: "
                         "`python -m qrhead_integrations._adapter`) -->")
SELECTION_TABLE_END = "<!-- /selection-options-table -->"


def render_selection_options(text: str) -> str:
    """docs/chunk_selection.md's text with its SelectionOptions table (between its markers) replaced by the
    current one."""
    return _render_between(text, SELECTION_TABLE_START, SELECTION_TABLE_END, selection_markdown())


def update_docs(root: str | os.PathLike[str] = ".") -> list[str]:
    """Rewrite the generated options tables in the framework docs, docs/engine.md and
    docs/chunk_selection.md; returns the files that changed."""
    renderers = {**dict.fromkeys(DOC_FILES, render_options_section), ENGINE_DOC: render_engine_options,
                 SELECTION_DOC: render_selection_options}
    changed = []
    for rel, render in renderers.items():
        path = Path(root) / rel
        old = path.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            changed.append(rel)
    return changed


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print("\n".join(update_docs()) or "docs are up to date")
