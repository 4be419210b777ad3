"""A head set brings the scoring it was detected with: the authors' published sets resolve ``"auto"`` to the
authors' variant (whole-suffix rows, 2-sigma filter, reference prompt), our own sets to the paper's query
rows; explicit options always win, and ``qrhead models`` shows each set's options and source."""

from __future__ import annotations

import subprocess
import sys

import pytest
import transformers as tf

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.heads import registered_head_sets
from qrhead_integrations.engine.options import ScoringOptions

AUTHORS = {"query_rows": "suffix", "token_filter": "2sigma", "template": "reference"}
PASSAGES = ["Shakespeare wrote Hamlet around 1600.", "Mount Everest is 8,849 m high.", "Bees dance to show food."]


def test_every_published_set_recommends_the_authors_scoring():
    published = [e for e in registered_head_sets() if e.load().info.get("source", "").startswith("published list")]
    assert len(published) >= 8
    for entry in published:
        hs = entry.load()
        resolved = ScoringOptions().resolved(hs.info["recommended_options"])
        assert {k: getattr(resolved, k) for k in AUTHORS} == AUTHORS, entry.key
        assert hs.info["variant"] == {**AUTHORS, "calibrate": True}, entry.key
    ours = [e for e in registered_head_sets() if e.key.startswith("smollm2-135m-instruct.qrhead")]
    resolved = ScoringOptions().resolved(ours[0].load().info.get("recommended_options"))
    assert (resolved.query_rows, resolved.token_filter, resolved.template) == ("query", None, "qrhead")


@pytest.fixture(scope="module")
def llama_1b_shaped(tok):
    """A random model with Llama-3.2-1B's attention layout (16 layers x 32 heads), so that its registered
    head set applies."""
    import torch

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096)
    return tf.LlamaForCausalLM(cfg).eval()


def test_auto_options_resolve_to_the_registered_sets_and_explicit_ones_win(llama_1b_shaped, tok):
    name = "meta-llama/Llama-3.2-1B-Instruct"
    auto = QRHeadScorer.from_model(llama_1b_shaped, tok, model_name=name)
    assert auto.heads.info["source"].startswith("published list")
    assert {k: getattr(auto.effective_options, k) for k in AUTHORS} == AUTHORS
    assert auto.options.query_rows == "auto"  # what the caller asked for is kept
    explicit = QRHeadScorer.from_model(llama_1b_shaped, tok, model_name=name, **AUTHORS)
    assert auto.score("Who wrote Hamlet?", PASSAGES) == explicit.score("Who wrote Hamlet?", PASSAGES)
    mine = auto.with_options(query_rows="query", template="qrhead")
    assert (mine.effective_options.query_rows, mine.effective_options.template,
            mine.effective_options.token_filter) == ("query", "qrhead", "2sigma")
    assert mine.score("Who wrote Hamlet?", PASSAGES) != auto.score("Who wrote Hamlet?", PASSAGES)
    custom = auto.with_options(heads=[(1, 0), (2, 5)])  # a set without a recommendation: the paper's rows
    assert (custom.effective_options.query_rows, custom.effective_options.token_filter,
            custom.effective_options.template) == ("query", None, "qrhead")


def test_qrhead_models_shows_each_sets_options_and_source():
    out = subprocess.run([sys.executable, "-m", "qrhead_integrations.cli", "models"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    line = next(x for x in out.splitlines() if "meta-llama/Llama-3.1-8B-Instruct [qrhead]" in x)
    assert "query_rows=suffix, token_filter=2sigma, template=reference" in line and "published list" in line
    smol = out[out.index("smollm2-135m-instruct"):].splitlines()[1]
    assert "query_rows=query, token_filter=None, template=qrhead" in smol and "linear fusion" in smol


def test_the_docs_state_the_shipped_default_sets_size_and_depth():
    """docs/engine.md states the shipped SmolLM2 set's head count and deepest layer: a new default set must
    come with the docs that describe it."""
    import re
    from pathlib import Path

    (entry,) = [e for e in registered_head_sets("HuggingFaceTB/SmolLM2-135M-Instruct") if e.variant == "qrhead"]
    hs = entry.load()
    text = (Path(__file__).resolve().parents[1] / "docs" / "engine.md").read_text()
    m = re.search(r"The shipped SmolLM2 set \((\d+) heads, deepest layer (\d+) of (\d+)\)", text)
    assert m, "docs/engine.md no longer states the shipped set's size and depth"
    assert (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (len(hs), max(l for l, _ in hs.heads), 30)


def test_the_performance_report_was_measured_with_the_shipped_default_set():
    """docs/performance.md names the head set each model was timed with; for the embedded default it must
    be the shipped set, so a new default set comes with a re-run benchmark (`python -m benchmarks.speed_memory`)."""
    import re
    from pathlib import Path

    (entry,) = [e for e in registered_head_sets("HuggingFaceTB/SmolLM2-135M-Instruct") if e.variant == "qrhead"]
    shipped = ",".join(f"{layer}-{head}" for layer, head in entry.load().heads)
    text = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    m = re.search(r"HuggingFaceTB/SmolLM2-135M-Instruct: .*? Heads: registered \(qrhead\): `([^`]+)`", text)
    assert m, "docs/performance.md no longer names the SmolLM2 head set it was measured with"
    assert m.group(1) == shipped, "docs/performance.md was measured with another head set: re-run the benchmark"
