"""The adapters' settings: their names (model loading plus every scoring option the adapters expose), the
stored, JSON-friendly form of their values, and the settings that describe an existing scorer."""

from __future__ import annotations

import os
import typing
from typing import Any

from ..engine.heads import HeadSet, parse_head_list
from ..engine.load_options import load_specs
from ..engine.options import OPTION_NAMES, TemplateName
from ..engine.scoring import QRHeadScorer

HeadsField = str | list[tuple[int, int]] | None

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
