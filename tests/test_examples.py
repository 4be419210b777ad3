"""Smoke tests of the runnable examples: each one runs end to end with tiny local models and small
settings, and prints what it did (first stage, re-ranked passages, selected chunks, answer). The
generators are the frameworks' own LLM classes (HuggingFaceLLM, ChatHuggingFace over HuggingFacePipeline)
around the loaded model. With the real packaged models (``real_model``), the examples' default questions
get the right answers."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

EXAMPLES = REPO / "examples"
HEADS = "1-0,2-1,3-3"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as for a script run: pydantic resolves annotations through it
    spec.loader.exec_module(module)
    return module


def _ranked_lines(out: str, section: str) -> list[str]:
    block = out.split(section, 1)[1].split("\n\n", 1)[0]
    return [line for line in block.splitlines()[1:] if re.match(r"\s+\d+\. \[", line)]


@pytest.mark.parametrize("scorer", ["small", "generator"])
def test_llama_index_query_engine_example(model_dir, capsys, scorer):
    pytest.importorskip("llama_index.retrievers.bm25")
    pytest.importorskip("llama_index.llms.huggingface")
    example = load_example("llama_index_query_engine")
    rc = example.main(["--scorer-model", model_dir, "--heads", HEADS, "--generator-model", model_dir,
                       "--max-new-tokens", "4", "--first-stage-k", "5", "--top-n", "2", "--scorer", scorer])
    out = capsys.readouterr().out
    assert rc == 0
    assert "via HuggingFaceLLM" in out
    assert ("the generator's own weights" in out) == (scorer == "generator")
    assert len(_ranked_lines(out, "first stage: BM25")) == 5
    reranked = _ranked_lines(out, "re-ranked by QRHead")
    assert len(reranked) == 2 and all("qrhead=" in line and "bm25=" in line for line in reranked)
    assert "\nanswer (" in out
    # the re-ranked passages come from the BM25 candidates
    first_ids = {re.search(r"\[(\w+)\]", line).group(1) for line in _ranked_lines(out, "first stage: BM25")}
    assert {re.search(r"\[(\w+)\]", line).group(1) for line in reranked} <= first_ids


def test_llama_index_example_with_mock_llm_and_fusion(model_dir, capsys):
    pytest.importorskip("llama_index.retrievers.bm25")
    example = load_example("llama_index_query_engine")
    rc = example.main(["--scorer-model", model_dir, "--heads", HEADS, "--generator-model", "mock",
                       "--fusion", "rrf", "--max-new-tokens", "4"])
    assert rc == 0 and len(_ranked_lines(capsys.readouterr().out, "re-ranked by QRHead")) == 3


@pytest.mark.parametrize("scorer", ["small", "generator"])
def test_langchain_chain_example(model_dir, capsys, scorer):
    pytest.importorskip("bm25s")
    pytest.importorskip("langchain_huggingface")
    example = load_example("langchain_chain")
    rc = example.main(["--scorer-model", model_dir, "--heads", HEADS, "--generator-model", model_dir,
                       "--max-new-tokens", "4", "--first-stage-k", "5", "--top-n", "2", "--fusion", "linear",
                       "--scorer", scorer])
    out = capsys.readouterr().out
    assert rc == 0
    assert "via ChatHuggingFace" in out
    assert ("the generator's own weights" in out) == (scorer == "generator")
    assert len(_ranked_lines(out, "first stage: BM25")) == 5
    reranked = _ranked_lines(out, "re-ranked by QRHead")
    assert len(reranked) == 2 and all("relevance=" in line for line in reranked)
    assert "\nanswer (" in out


@pytest.mark.parametrize(("framework", "extra"), [
    ("core", []), ("llama-index", []), ("langchain", []),
    ("core", ["--trim-to-evidence", "1"]), ("langchain", ["--scorer", "generator"]),
])
def test_long_document_example_bundled_text(model_dir, capsys, framework, extra):
    example = load_example("long_document_qa")
    rc = example.main(["--source", "bundled", "--framework", framework, "--scorer-model", model_dir,
                       "--heads", HEADS, "--generator-model", model_dir, "--max-new-tokens", "4",
                       "--chunk-tokens", "96", "--token-budget", "300", "--max-context-tokens", "1024", *extra])
    out = capsys.readouterr().out
    assert rc == 0
    assert ("via ChatHuggingFace" if framework == "langchain" else "via HuggingFaceLLM") in out
    if "--trim-to-evidence" in extra:
        assert "evidence sentences (N=1) of chunks" in out
    document = (EXAMPLES / "data" / "lighthouses.txt").read_text(encoding="utf-8")
    chunks = re.findall(r"chunk +(\d+) \[(\d+):(\d+)\] score=(-?[\d.]+) tokens=(\d+)", out)
    assert chunks, out
    starts = [int(s) for _, s, _, _, _ in chunks]
    assert starts == sorted(starts)  # document order
    assert sum(int(t) for *_, t in chunks) <= 300  # within the token budget
    m = re.search(r"(\d+) chunks, all scored in one pass", out)
    assert m and int(m.group(1)) > len(chunks)
    assert "offsets checked" in out and "answer (" in out
    assert f"{len(document)} characters" in out
    assert "gold answers: ['John Smeaton', 'Smeaton']" in out


def test_long_document_example_on_a_squad_article(model_dir, capsys, data_dir):
    if data_dir is None or not (data_dir / "squad-articles" / "documents.jsonl").is_file():
        pytest.skip("shared SQuAD articles not available")
    example = load_example("long_document_qa")
    rc = example.main(["--source", "squad", "--scorer-model", model_dir, "--heads", HEADS,
                       "--generator-model", model_dir, "--max-new-tokens", "4", "--max-chars", "6000"])
    out = capsys.readouterr().out
    assert rc == 0 and "gold answers:" in out and "6000 characters" in out


def test_examples_run_as_scripts(model_dir):
    """One real command line (a new process, as a user runs it), on the framework-free path."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "long_document_qa.py"), "--source", "bundled",
         "--scorer-model", model_dir, "--heads", HEADS, "--generator-model", model_dir,
         "--max-new-tokens", "2", "--token-budget", "200"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "selected" in proc.stdout and "answer (" in proc.stdout


@pytest.mark.real_model
def test_long_document_example_with_the_default_scorer_finds_the_evidence(model_dir, capsys):
    """The embedded default scorer (real SmolLM2 weights and its registered heads) picks the chunk that
    answers the bundled question; the generator is the tiny model (only the selection is checked)."""
    example = load_example("long_document_qa")
    rc = example.main(["--source", "bundled", "--generator-model", model_dir, "--max-new-tokens", "2",
                       "--token-budget", "400"])
    out = capsys.readouterr().out
    assert rc == 0
    document = (EXAMPLES / "data" / "lighthouses.txt").read_text(encoding="utf-8")
    evidence = document.index("The upper part of Smeaton's tower was taken down and rebuilt on Plymouth Hoe")
    spans = [(int(a), int(b)) for a, b in re.findall(r"chunk +\d+ \[(\d+):(\d+)\]", out)]
    assert any(a <= evidence < b for a, b in spans), out


# --- the real models: the examples' default questions get the right answers ------------------------


def _need_packaged(name: str) -> None:
    from qrhead_integrations.engine.packaged import PackagedModelError, packaged_model

    try:
        packaged_model(name).part_paths()
    except PackagedModelError:
        pytest.skip(f"packaged model {name} not installed (`qrhead models`)")


def _answer(out: str) -> str:
    return out.split("\nanswer (", 1)[1].split("\n", 1)[1].strip() if "\nanswer (" in out else ""


@pytest.mark.real_model
def test_long_document_example_answers_the_bundled_question(capsys):
    """Defaults: the embedded SmolLM2 scorer selects within 300 tokens, Qwen2.5-Coder-1.5B answers
    (the 0.5B model answers another engineer: docs/end_to_end.md)."""
    _need_packaged("qwen2.5-coder-1.5b-instruct")
    example = load_example("long_document_qa")
    assert example.main(["--source", "bundled"]) == 0
    out = capsys.readouterr().out
    answer = out.split("\nanswer (", 1)[1].split("\n", 1)[0]  # "name, 12.3s): the answer"
    assert "smeaton" in answer.lower(), out


@pytest.mark.real_model
def test_llama_index_example_answers_the_organ(capsys):
    """The short answer prompt: Qwen2.5-Coder-0.5B answers the organ (with LlamaIndex's default prompt it
    names the hormone)."""
    pytest.importorskip("llama_index.retrievers.bm25")
    _need_packaged("qwen2.5-coder-0.5b-instruct")
    example = load_example("llama_index_query_engine")
    assert example.main([]) == 0
    out = capsys.readouterr().out
    assert "pancreas" in _answer(out).lower(), out


@pytest.mark.real_model
def test_langchain_example_answers_the_treaty(capsys):
    pytest.importorskip("langchain_huggingface")
    _need_packaged("qwen2.5-coder-0.5b-instruct")
    example = load_example("langchain_chain")
    assert example.main([]) == 0
    out = capsys.readouterr().out
    assert "versailles" in _answer(out).lower(), out
