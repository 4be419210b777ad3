"""Command-line flags generated from the declared settings, shared by ``qrhead`` (rank, detect, serve) and
``qrhead eval``: one flag per :class:`~qrhead_integrations.engine.load_options.LoadOptions` setting and per
:class:`~qrhead_integrations.ScoringOptions` option (defaults, choices and help included), and the values
given on a parsed command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Container, Mapping
from typing import Any


def nullable(kind: Any):
    """An argparse ``type`` that reads ``none`` (any case) as None and anything else with ``kind``."""
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def json_object(text: str) -> dict[str, Any]:
    """An argparse ``type`` for a JSON object (``--model-kwargs``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, not {text!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, not {text!r}")
    return value


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_load_args(p: Any, *, only: Container[str] | None = None, skip: Container[str] = (),
                  helps: Mapping[str, str] | None = None) -> None:
    """One flag per model-loading setting (``--model``, ``--device``, ``--device-map``, ``--dtype``, ...),
    generated from :func:`~qrhead_integrations.engine.load_options.load_specs`; ``p`` is a parser or an
    argument group. ``only`` names the settings to add (default: all), ``skip`` leaves settings out, ``helps`` replaces a flag's help text."""
    from .engine.load_options import load_specs

    for spec in load_specs():
        if spec.name in skip or (only is not None and spec.name not in only):
            continue
        text = (helps or {}).get(spec.name, spec.cli_help)
        if spec.kind is bool:
            p.add_argument(flag(spec.name), dest=spec.name, action=argparse.BooleanOptionalAction,
                           default=spec.default, help=text)
        else:
            p.add_argument(flag(spec.name), dest=spec.name, type=json_object if spec.kind is dict else str,
                           default=spec.default, help=text)


def load_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The model-loading settings on a parsed command line (those its parser has flags for)."""
    from .engine.load_options import LOAD_OPTION_NAMES

    return {name: getattr(args, name) for name in LOAD_OPTION_NAMES if hasattr(args, name)}


def add_option_args(p: argparse.ArgumentParser) -> None:
    """One flag per scoring option, generated from ScoringOptions (defaults, choices and help included)."""
    from .engine.options import option_specs

    g = p.add_argument_group("scoring options")
    for spec in option_specs():
        if spec.name == "show_progress":
            continue
        flags = [flag(spec.name)]
        if spec.name == "candidate_order":
            flags.append("--order")
        default = f" (default: {spec.default})"
        if spec.kind is bool:
            g.add_argument(*flags, dest=spec.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=spec.description + default)
            continue
        kind = {int: int, float: float}.get(spec.kind, str)
        choices = list(spec.choices) + (["none"] if spec.nullable else []) if spec.choices else None
        g.add_argument(*flags, dest=spec.name, type=nullable(kind) if spec.nullable else kind, choices=choices,
                       default=argparse.SUPPRESS, help=spec.description + default)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The scoring options given on a parsed command line (only those given: the rest keep their defaults)."""
    from .engine.options import OPTION_NAMES

    return {name: getattr(args, name) for name in OPTION_NAMES if hasattr(args, name)}
