"""Models split by an accelerate device map (``device_map="auto"`` for models larger than one GPU).

A CPU-only machine cannot hold layers on several GPUs, but it exercises the same machinery: layers
offloaded to "disk" (weights on the meta device between forwards, loaded by accelerate hooks onto
the execution device for each forward), the input embedding and the LM head among them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_tokenizer, tiny_model

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.loading import clear_model_cache, input_device

pytest.importorskip("accelerate")

HEADS = [(1, 0), (2, 1), (3, 3)]  # early exit at layer 3 of 5
PASSAGES = [
    "Alpha Centauri is the closest star system to the Sun.",
    {"title": "Bees", "text": "Honey bees communicate with a waggle dance."},
    "The Danube flows through ten countries.",
    "Penguins live in the southern hemisphere.",
]
QUERIES = ["closest star?", "how do bees talk?"]
SPLIT = {
    "model.embed_tokens": "disk", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
    "model.layers.2": "cpu", "model.layers.3": "disk", "model.layers.4": "disk", "model.norm": "cpu",
    "lm_head": "disk",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tok):
    folder = tmp_path_factory.mktemp("tiny-llama-dm")
    tiny_model("llama", tok, layers=5, seed=3).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def expected(model_dir):
    scorer = QRHeadScorer.from_pretrained(str(model_dir), heads=HEADS, device="cpu")
    out = {q: scorer.score(q, PASSAGES) for q in QUERIES}
    out["all"] = scorer.head_masses(QUERIES[0], PASSAGES, heads="all").per_head()
    return out


def _check(scorer, expected):
    for q in QUERIES:
        np.testing.assert_allclose(scorer.score(q, PASSAGES), expected[q], rtol=0, atol=1e-7)
    enc = scorer.encode(PASSAGES)  # prefix cache reused across queries, layers on several "devices"
    for q in reversed(QUERIES):
        np.testing.assert_allclose(enc.score(q), expected[q], rtol=0, atol=1e-7)
    # every head of every layer (no early exit: the last layer and the LM head's neighbours run)
    np.testing.assert_allclose(scorer.head_masses(QUERIES[0], PASSAGES, heads="all").per_head(),
                               expected["all"], rtol=0, atol=1e-7)


def test_disk_offloaded_layers_and_embedding(model_dir, tmp_path, expected):
    scorer = QRHeadScorer.from_pretrained(str(model_dir), heads=HEADS, device_map=SPLIT,
                                          model_kwargs={"offload_folder": str(tmp_path / "offload")})
    try:
        assert scorer.model.hf_device_map["model.embed_tokens"] == "disk"
        assert scorer.model.get_input_embeddings().weight.device.type == "meta"
        assert input_device(scorer.model) == torch.device("cpu")
        _check(scorer, expected)
        offloaded = [n for n, p in scorer.model.named_parameters() if p.device.type == "meta"]
        assert any(".layers.3." in n for n in offloaded) and "lm_head.weight" in offloaded
    finally:
        clear_model_cache()


def test_device_map_auto(model_dir, tmp_path, expected):
    """``device_map="auto"`` with a memory budget smaller than the model: accelerate plans the placement
    (without a GPU its planner offloads the whole model to disk; explicit splits are tested above)."""
    scorer = QRHeadScorer.from_pretrained(
        str(model_dir), heads=HEADS, device_map="auto",
        model_kwargs={"max_memory": {"cpu": 20_000_000}, "offload_folder": str(tmp_path / "offload")})
    try:
        assert "disk" in set(scorer.model.hf_device_map.values()), scorer.model.hf_device_map
        _check(scorer, expected)
    finally:
        clear_model_cache()
    plain = QRHeadScorer.from_pretrained(str(model_dir), heads=HEADS, device_map="auto")  # fits: one device
    try:
        np.testing.assert_allclose(plain.score(QUERIES[0], PASSAGES), expected[QUERIES[0]], rtol=0, atol=1e-7)
    finally:
        clear_model_cache()


def test_early_exit_reoffloads_a_preloaded_layer(model_dir, tmp_path, expected):
    """With whole-block offload (``preload_module_classes``), the layer interrupted by early exit has its
    weights loaded when the forward stops; the engine sends them back to the meta device."""
    from accelerate import dispatch_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    model = dispatch_model(model, {k: v for k, v in SPLIT.items()}, offload_dir=str(tmp_path / "off"),
                           preload_module_classes=["LlamaDecoderLayer"])
    scorer = QRHeadScorer.from_model(model, load_tokenizer("smollm2"), heads=HEADS)
    assert input_device(model) == torch.device("cpu")
    for q in QUERIES:
        np.testing.assert_allclose(scorer.score(q, PASSAGES), expected[q], rtol=0, atol=1e-7)
        stopped = {p.device.type for n, p in model.named_parameters() if ".layers.3." in n}
        assert stopped == {"meta"}, "the layer cut short by early exit kept its weights loaded"
