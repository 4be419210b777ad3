"""What the framework adapters share: their settings, the scorer they build from them, first-stage scores.

The LlamaIndex and LangChain classes keep every setting as a plain, JSON-friendly pydantic field and
build the :class:`~qrhead_integrations.QRHeadScorer` from those fields on first use. The model behind it
comes from the engine's process-wide cache, so every adapter, chunk retriever and scorer configured for
the same model shares one copy of the weights. When a setting is changed after the scorer was built,
the next call builds a new scorer (cheap: the weights stay cached).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from typing_extensions import Self

from .engine.heads import HeadSet, parse_head_list
from .engine.scoring import QRHeadScorer

#: Field names whose values configure the scorer (the rest configure the adapter itself).
LOAD_FIELDS = ("model", "heads", "device", "dtype", "attn_implementation")
OPTION_FIELDS = (
    "candidate_order", "calibrate", "null_query", "max_context_tokens", "max_passage_tokens",
    "max_query_tokens", "fusion", "fusion_weight", "rrf_k",
)
SCORER_FIELDS = LOAD_FIELDS + OPTION_FIELDS

#: Defaults of the scorer settings, identical to the engine's (``QRHeadScorer.__init__``).
DEFAULTS: dict[str, Any] = {
    "model": None, "heads": None, "device": None, "dtype": None, "attn_implementation": None,
    "candidate_order": "reversed", "calibrate": True, "null_query": "N/A", "max_context_tokens": None,
    "max_passage_tokens": None, "max_query_tokens": 256, "fusion": None, "fusion_weight": 0.5, "rrf_k": 60,
}

#: Field descriptions, shared by both frameworks' classes (and their docs).
DESCRIPTIONS: dict[str, str] = {
    "model": "Scorer model: hub id, local folder, .gguf file or packaged model name; None = the embedded "
             "default (SmolLM2-135M-Instruct).",
    "heads": "Heads that score: None = the set registered for the model; 'all'; 'random:K[:SEED]'; a "
             "registered variant name; a head-set JSON path; '13-18,13-21'; or a list of (layer, head).",
    "device": "Device for the scorer model ('cpu', 'cuda', 'cuda:1', 'mps'); None = CUDA, then MPS, "
              "then CPU.",
    "dtype": "Weights dtype ('float32', 'bfloat16', 'float16'); None = bfloat16/float16 on GPU, "
             "float32 on CPU.",
    "attn_implementation": "transformers attention implementation ('sdpa', 'eager', 'flash_attention_2'); "
                           "None = the model's default.",
    "candidate_order": "Where the first-stage order puts passages in the prompt: 'reversed' (first "
                       "candidate next to the query), 'as_given', or 'both' (average of the two).",
    "calibrate": "Subtract the null query's attention mass (the QRHead calibration).",
    "null_query": "The content-free query used for calibration.",
    "max_context_tokens": "Token budget of one prompt; longer inputs are split into windows whose scores "
                          "stay comparable. None = the model's context length.",
    "max_passage_tokens": "Truncate each passage to this many tokens before scoring (flagged on the "
                          "result, never silent). None = no truncation.",
    "max_query_tokens": "Longest query (tokens) that windows reserve room for.",
    "fusion": "Fuse the QRHead score with the first stage: None, 'rrf' (reciprocal rank) or 'linear' "
              "(min-max normalised scores).",
    "fusion_weight": "QRHead share of the fused score (the first stage gets 1 - fusion_weight).",
    "rrf_k": "The k of reciprocal-rank fusion.",
}


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


def normalize_model(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def normalize_dtype(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        return str(value).removeprefix("torch.")
    return value


@dataclass
class _Pinned:
    """An already loaded model a scorer was handed over with (``from_scorer``): reused, never reloaded."""

    model: Any
    tokenizer: Any
    name: str


class ScorerSlot:
    """The scorer of one adapter instance, (re)built from its settings when they change.

    Held in a pydantic ``PrivateAttr``; pickling drops the scorer (it is rebuilt, from the process-wide
    model cache, on first use after unpickling).
    """

    def __init__(self) -> None:
        self.scorer: QRHeadScorer | None = None
        self.key: str | None = None
        self.pinned: _Pinned | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"scorer": None, "key": None, "pinned": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @staticmethod
    def key_of(settings: dict[str, Any]) -> str:
        return json.dumps(settings, sort_keys=True, default=str)

    def pin(self, scorer: QRHeadScorer, settings: dict[str, Any]) -> None:
        """Use ``scorer`` as is while the settings stay ``settings``; its model is reused when they change."""
        self.pinned = _Pinned(scorer.model, scorer.tokenizer, scorer.model_name)
        self.scorer, self.key = scorer, self.key_of(settings)

    def get(self, settings: dict[str, Any]) -> QRHeadScorer:
        key = self.key_of(settings)
        if self.scorer is not None and self.key == key:
            return self.scorer
        options = {name: settings[name] for name in OPTION_FIELDS}
        heads = settings["heads"]
        if self.pinned is not None and settings["model"] == self.pinned.name:
            scorer = QRHeadScorer.from_model(self.pinned.model, self.pinned.tokenizer, heads,
                                             model_name=self.pinned.name, **options)
        else:
            scorer = QRHeadScorer.from_pretrained(
                settings["model"], heads, device=settings["device"], dtype=settings["dtype"],
                attn_implementation=settings["attn_implementation"], **options,
            )
        self.scorer, self.key = scorer, key
        return scorer


#: Settings stored in a normal, JSON-friendly form (see :func:`normalize_field`).
NORMALIZED_FIELDS = ("heads", "model", "dtype", "device")


def normalize_field(name: str, value: Any) -> Any:
    """The stored form of a scorer setting: what a pydantic ``mode="before"`` validator returns."""
    if name == "heads":
        return normalize_heads(value)
    if name == "model":
        return normalize_model(value)
    if name == "dtype":
        return normalize_dtype(value)
    if name == "device":
        return None if value is None else str(value)
    return value


A = TypeVar("A", bound="ScorerSettings")


class ScorerSettings:
    """What both framework adapters do with their settings: build (and share) the engine scorer.

    Mixed into pydantic models that declare the :data:`SCORER_FIELDS` as fields and a
    ``_slot: ScorerSlot = PrivateAttr(default_factory=ScorerSlot)``.
    """

    _slot: ScorerSlot

    @classmethod
    def from_scorer(cls, scorer: QRHeadScorer, **kwargs: Any) -> Self:
        """Wrap an existing scorer (e.g. one built with ``QRHeadScorer.from_model`` on the generator's
        weights). Its settings become this object's fields; its model is reused, never reloaded."""
        fields = settings_of_scorer(scorer)
        fields.update(kwargs)
        self = cls(**fields)
        self._slot.pin(scorer, self._settings())
        return self

    def _settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCORER_FIELDS}

    @property
    def scorer(self) -> QRHeadScorer:
        """The engine scorer for the current settings (loaded on first use, model shared process-wide)."""
        return self._slot.get(self._settings())

    def load(self) -> Self:
        """Load the scorer model now instead of on the first query; returns ``self``."""
        _ = self.scorer
        return self


def settings_of_scorer(scorer: QRHeadScorer) -> dict[str, Any]:
    """Field values that describe ``scorer`` (for ``from_scorer``)."""
    model = scorer.model
    out: dict[str, Any] = {
        "model": scorer.model_name,
        "heads": [tuple(h) for h in scorer.heads.heads],
        "device": str(scorer._input_device),
        "dtype": normalize_dtype(getattr(model, "dtype", None)),
        "attn_implementation": None,
    }
    for name in OPTION_FIELDS:
        out[name] = getattr(scorer, name)
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
    """The first-stage scores when every candidate has a finite one, else None (the order is used)."""
    values = []
    for s in scores:
        if s is None or isinstance(s, bool):
            return None
        try:
            f = float(s)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        values.append(f)
    return values
