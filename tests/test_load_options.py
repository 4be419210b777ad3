"""LoadOptions: the one declaration of the model-loading settings, its validation, and the places generated from
(or checked against) it: the adapters' fields, the command lines' flags and the server's settings."""

from __future__ import annotations

import argparse
import inspect
import pickle

import pytest
import torch
from conftest import TINY_HEADS

from qrhead_integrations import LoadOptions, QRHeadScorer
from qrhead_integrations.engine.errors import QRHeadTypeError, QRHeadValueError
from qrhead_integrations.engine.load_options import DEFAULT_LOAD, LOAD_OPTION_NAMES, load_specs
from qrhead_integrations.engine.loading import load_model

SPECS = {s.name: s for s in load_specs()}


def test_specs_follow_the_declaration():
    assert tuple(SPECS) == LOAD_OPTION_NAMES == (
        "model", "device", "device_map", "dtype", "attn_implementation", "revision", "trust_remote_code",
        "model_kwargs")
    assert all(s.description and s.cli_help for s in SPECS.values())
    assert DEFAULT_LOAD.to_dict() == {name: s.default for name, s in SPECS.items()}
    assert SPECS["trust_remote_code"].kind is bool and not SPECS["trust_remote_code"].nullable
    assert SPECS["model_kwargs"].kind is dict and SPECS["device_map"].kind is str


@pytest.mark.parametrize("entry", [load_model, QRHeadScorer.from_pretrained])
def test_entry_points_take_every_setting_by_name_with_its_default(entry):
    params = inspect.signature(entry).parameters
    for name, spec in SPECS.items():
        assert name in params, f"{entry.__qualname__} lacks {name}"
        assert params[name].default == spec.default, name


BAD = [
    (dict(dtype="int4"), QRHeadValueError, "unsupported dtype 'int4'"),
    (dict(dtype=torch.int8), QRHeadValueError, "floating-point"),
    (dict(dtype=3), QRHeadTypeError, "dtype must be a name"),
    (dict(device="gpu0"), QRHeadValueError, "invalid device 'gpu0'"),
    (dict(device=1.5), QRHeadTypeError, "device must be a string"),
    (dict(device_map=True), QRHeadTypeError, "device_map must be"),
    (dict(attn_implementation="bogus"), QRHeadValueError, "attn_implementation='bogus'"),
    (dict(attn_implementation=3), QRHeadTypeError, "attn_implementation must be a string"),
    (dict(model_kwargs="x"), QRHeadValueError, "model_kwargs must be a dict"),
    (dict(trust_remote_code="yes"), QRHeadTypeError, "trust_remote_code must be True or False"),
    (dict(revision=3), QRHeadTypeError, "revision must be a str or None"),
    (dict(model=3), QRHeadTypeError, "model must be a hub id"),
    (dict(device="cpu", device_map="auto"), ValueError, "pass either device or device_map, not both"),
]


@pytest.mark.parametrize(("settings", "error", "message"), BAD, ids=[next(iter(b[0])) + str(i) for i, b in enumerate(BAD)])
def test_bad_values_are_clear_errors(settings, error, message):
    with pytest.raises(error, match=message):
        LoadOptions(**settings)
    with pytest.raises(error, match=message):  # the same check, before anything is loaded
        load_model(**{"model": "./no/such/model", **settings})


def test_values_are_kept_as_given_and_replace_checks_names(tmp_path):
    opts = LoadOptions(model=tmp_path, device=torch.device("cpu"), dtype=torch.float64)
    assert opts.model == tmp_path and opts.dtype is torch.float64
    assert opts.replace(device=None, device_map="auto").device_map == "auto"
    assert opts.changed() == {"model": tmp_path, "device": torch.device("cpu"), "dtype": torch.float64}
    with pytest.raises(TypeError, match="unknown model-loading setting.*devcie"):
        opts.replace(devcie="cpu")
    with pytest.raises(AttributeError):
        opts.device = "cuda"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(LoadOptions(model="m", dtype="bf16"))) == LoadOptions(model="m", dtype="bf16")


# --- what is generated from the declaration ---------------------------------------------------------------


def test_adapter_fields_are_the_load_options():
    from qrhead_integrations.adapters.fields import ScorerConfig
    from qrhead_integrations.adapters.settings import LOADER_FIELDS

    assert [n for n in LOADER_FIELDS if n != "heads"] == list(LOAD_OPTION_NAMES)
    for name, spec in SPECS.items():
        annotation, default, description = LOADER_FIELDS[name]
        field = ScorerConfig.model_fields[name]
        assert (annotation, default, description) == (spec.annotation, spec.default, spec.description)
        assert field.default == spec.default and field.description == spec.description


@pytest.mark.parametrize("framework", ["langchain", "llama_index"])
def test_both_frameworks_have_every_loading_field(framework):
    if framework == "langchain":
        pytest.importorskip("langchain_core")
        from qrhead_integrations.langchain import QRHeadReranker as Reranker
    else:
        pytest.importorskip("llama_index.core")
        from qrhead_integrations.llama_index import QRHeadRerank as Reranker
    fields = Reranker.model_fields
    assert {name: fields[name].default for name in LOAD_OPTION_NAMES} == DEFAULT_LOAD.to_dict()


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions}


def _subparser(*path: str) -> argparse.ArgumentParser:
    from qrhead_integrations.cli import build_parser

    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("command", ["rank", "detect", "serve"])
def test_cli_has_a_flag_per_loading_setting(command):
    actions = _actions(_subparser(command))
    for name, spec in SPECS.items():
        action = actions[name]
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        assert action.default == spec.default


def test_ray_cli_has_a_flag_per_loading_setting():
    from qrhead_integrations.serve.ray import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("batch", "serve"):
        actions = _actions(sub.choices[command])
        assert {name: actions[name].default for name in LOAD_OPTION_NAMES} == DEFAULT_LOAD.to_dict()


def test_cli_flags_parse_into_load_options():
    from qrhead_integrations.cli_options import load_from_args

    args = _subparser("rank").parse_args(
        ["f.txt", "--model", "m", "--device-map", "auto", "--dtype", "bf16", "--attn-implementation", "eager",
         "--revision", "v1", "--trust-remote-code", "--model-kwargs", '{"low_cpu_mem_usage": true}'])
    opts = LoadOptions(**load_from_args(args))
    assert opts == LoadOptions(model="m", device_map="auto", dtype="bf16", attn_implementation="eager",
                               revision="v1", trust_remote_code=True, model_kwargs={"low_cpu_mem_usage": True})
    with pytest.raises(SystemExit):
        _subparser("rank").parse_args(["f.txt", "--model-kwargs", "[1]"])


def test_server_settings_carry_every_loading_setting():
    from qrhead_integrations.serve.cli import settings_from_args
    from qrhead_integrations.serve.config import LOAD_FIELDS, ScorerSettings

    defaults = ScorerSettings()
    assert set(LOAD_FIELDS) <= set(LOAD_OPTION_NAMES)
    assert {name: getattr(defaults, name) for name in LOAD_FIELDS} == {n: SPECS[n].default for n in LOAD_FIELDS}
    assert defaults.load_options() == DEFAULT_LOAD
    args = _subparser("serve").parse_args(["--device-map", "auto", "--revision", "v2", "--max-passage-tokens", "64"])
    settings = settings_from_args(args)
    assert settings.options == {"device_map": "auto", "revision": "v2", "max_passage_tokens": 64}
    assert settings.load_options() == LoadOptions(device_map="auto", revision="v2")
    full = LoadOptions(model="m", device="cpu", dtype="float32", attn_implementation="eager", revision="r",
                       trust_remote_code=True, model_kwargs={"a": 1})
    assert ScorerSettings.from_load(full.to_dict()).load_options() == full


# --- loading -------------------------------------------------------------------------------------------------


def test_tiny_model_loads_with_load_options(model_dir):
    opts = LoadOptions(model=model_dir, device="cpu", dtype="float32", attn_implementation="eager",
                       model_kwargs={"low_cpu_mem_usage": True})
    scorer = QRHeadScorer.from_pretrained(heads=TINY_HEADS, **opts.to_dict())
    assert scorer.device.type == "cpu" and scorer.model.dtype == torch.float32
    assert scorer.model.config._attn_implementation == "eager"
    assert opts.load().model is scorer.model  # the same settings: the process-wide cache's copy
    scores = scorer.score("Which tower?", ["The Eiffel Tower.", "Honey bees dance."])
    assert len(scores) == 2
