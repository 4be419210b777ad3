"""Every model-loading setting in one frozen, validated object.

:class:`LoadOptions` is to model loading what :class:`~.options.ScoringOptions` is to scoring: the one place
a setting is declared (default, accepted values, description, command-line help).
:func:`~.loading.load_model` and :meth:`QRHeadScorer.from_pretrained` take the settings by name and build
one; the framework adapters' loading fields, the ``qrhead`` command line's loading flags and the server's
settings are generated from :func:`load_specs`. Adding a setting is one edit here (plus the code that
uses it in :mod:`.loading`).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import QRHeadTypeError, QRHeadValueError
from .options import OptionSpec, replace_known, unpack_annotation
from .packaged import DEFAULT_MODEL


def _check_model(value: Any) -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise QRHeadTypeError(f"model must be a hub id, a path, a packaged model name or None, "
                              f"not {type(value).__name__}")


def _check_device(value: Any) -> None:
    from .loading import parse_device

    if isinstance(value, bool) or not isinstance(value, (str, torch.device, int)):
        raise QRHeadTypeError(f"device must be a string such as 'cpu' or 'cuda:1', a torch.device, a CUDA index or None, "
                              f"not {type(value).__name__}")
    parse_device(value)


def _check_device_map(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (str, dict, int, torch.device)):
        raise QRHeadTypeError(f"device_map must be 'auto' (or another accelerate strategy name), a module -> "
                              f"device dict, a device or None, not {type(value).__name__}")


def _check_dtype(value: Any) -> None:
    from .loading import resolve_dtype

    if not isinstance(value, (str, torch.dtype)):
        raise QRHeadTypeError(f"dtype must be a name such as 'bfloat16', a torch.dtype or None, "
                              f"not {type(value).__name__}")
    resolve_dtype(value, torch.device("cpu"))  # the device only matters for "auto"


def _check_attn(value: Any) -> None:
    from .loading import check_attn_implementation

    if not isinstance(value, str):
        raise QRHeadTypeError(f"attn_implementation must be a string or None, not {type(value).__name__}")
    check_attn_implementation(value)


def _check_model_kwargs(value: Any) -> None:
    if not isinstance(value, dict):
        raise QRHeadValueError(f"model_kwargs must be a dict of from_pretrained keywords, not {type(value).__name__}")


def _setting(default: Any, description: str, cli_help: str, **extra: Any) -> Any:
    """A declared setting: ``description`` for the adapters' fields and the docs, ``cli_help`` for the flag."""
    return field(default=default, metadata={"description": description, "cli_help": cli_help, **extra})


@dataclass(frozen=True)
class LoadOptions:
    """Which model is loaded, where and how (scoring options and heads excluded).

    Values are kept as given (a path stays a path, a ``torch.dtype`` stays one); their spelling is checked
    here, whether the device exists or the model is found when the model is loaded.
    """

    model: str | None = _setting(
        None, "Scorer model: hub id, local folder, .gguf file or packaged model name; None = the embedded "
              "default (SmolLM2-135M-Instruct).",
        f"hub id, local folder, .gguf file or packaged model name (default: {DEFAULT_MODEL})", check=_check_model)
    device: str | None = _setting(
        None, "Device for the scorer model ('cpu', 'cuda', 'cuda:1', 'mps'); None = CUDA, then MPS, then CPU.",
        "cpu, cuda, cuda:1, mps (default: best available)", check=_check_device)
    device_map: str | dict[str, Any] | None = _setting(
        None, "accelerate device map for big models ('auto', or a module -> device dict); instead of device.",
        "accelerate device map, e.g. auto (one model over several GPUs)", check=_check_device_map, kind=str)
    dtype: str | None = _setting(
        None, "Weights dtype ('float32', 'bfloat16', 'float16'); None = bfloat16/float16 on GPU, float32 on CPU.",
        "float32, bfloat16, float16 (default: bf16 on GPU, fp32 on CPU)", check=_check_dtype)
    attn_implementation: str | None = _setting(
        None, "transformers attention implementation ('sdpa', 'eager', 'flash_attention_2'); None = the "
              "model's default.",
        "transformers attention implementation: sdpa, eager, flash_attention_2 (default: the model's)",
        check=_check_attn)
    revision: str | None = _setting(
        None, "Model revision (branch, tag or commit) for hub ids.",
        "model revision (branch, tag or commit) for hub ids")
    trust_remote_code: bool = _setting(
        False, "Allow a hub model's own code (only for models you trust).",
        "allow a hub model's own code (only for models you trust)")
    model_kwargs: dict[str, Any] | None = _setting(
        None, "Further from_pretrained keywords, e.g. {'quantization_config': {...}} (JSON values).",
        "further from_pretrained keywords as a JSON object, e.g. '{\"low_cpu_mem_usage\": true}'",
        check=_check_model_kwargs, kind=dict)

    def __post_init__(self) -> None:
        for spec in load_specs():
            _validate(spec, getattr(self, spec.name))
        if self.device is not None and self.device_map is not None:
            raise ValueError("pass either device or device_map, not both")

    def replace(self, **changes: Any) -> LoadOptions:
        """A copy with ``changes`` applied (validated); unknown names are an error."""
        return replace_known(self, changes, LOAD_OPTION_NAMES, "model-loading setting(s)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **more: Any) -> LoadOptions:
        return DEFAULT_LOAD.replace(**{**dict(values or {}), **more})

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name: ``load_model(**opts.to_dict())`` loads this model."""
        return {name: getattr(self, name) for name in LOAD_OPTION_NAMES}

    def load(self) -> Any:
        """The :class:`~.loading.LoadedModel` (model, tokenizer, name) these settings describe (cached process-wide)."""
        from .loading import load_from_options

        return load_from_options(self)

    def changed(self) -> dict[str, Any]:
        """The settings that differ from their defaults."""
        return {k: v for k, v in self.to_dict().items() if v != getattr(DEFAULT_LOAD, k)}


@dataclass(frozen=True)
class LoadSpec(OptionSpec):
    """One loading setting as the adapters, the command line and the validation see it."""

    cli_help: str = ""
    check: Callable[[Any], None] | None = None


_SPECS: list[LoadSpec] = []


def load_specs() -> list[LoadSpec]:
    """Every model-loading setting, in declaration order."""
    if not _SPECS:
        hints = typing.get_type_hints(LoadOptions)
        for f in dataclasses.fields(LoadOptions):
            meta = f.metadata
            if "kind" in meta:  # a union of several types (str or dict): the kind the command line parses
                args = typing.get_args(hints[f.name])
                kind, choices, nullable = meta["kind"], None, type(None) in args
            else:
                kind, choices, nullable = unpack_annotation(hints[f.name])
            _SPECS.append(LoadSpec(f.name, f.default, hints[f.name], kind, choices, nullable, meta["description"],
                                   cli_help=meta["cli_help"], check=meta.get("check")))
    return list(_SPECS)


def _validate(spec: LoadSpec, value: Any) -> None:
    if value is None and spec.nullable:
        return
    if spec.check is not None:
        spec.check(value)
    elif spec.kind is bool:
        if not isinstance(value, bool):
            raise QRHeadTypeError(f"{spec.name} must be True or False, not {value!r}")
    elif not isinstance(value, spec.kind):
        raise QRHeadTypeError(f"{spec.name} must be a {spec.kind.__name__}{' or None' if spec.nullable else ''}, "
                              f"not {type(value).__name__}")


LOAD_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LoadOptions))
DEFAULT_LOAD = LoadOptions()
