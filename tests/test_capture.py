"""The fast capture path against transformers' eager attention, on tiny models of four families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_tokenizer, tiny_model
from reference import eager_attentions, reference_mass, reference_scores

from qrhead_integrations import HeadSet, QRHeadScorer
from qrhead_integrations.engine.capture import AttentionPass, CapturePlan
from qrhead_integrations.engine.prompt import as_passage, build_prompt
from research.needle import HeadMaskPass

PASSAGES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    {"title": "Photosynthesis", "text": "Plants turn light into chemical energy. [3] is not a marker here."},
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",  # duplicate
    "x",
    "",
    "Mount Everest, on the border of Nepal and China, is the highest mountain on Earth; "
    "its summit is 8,849 metres above sea level and climbers attempt it each spring.",
]
QUERY = "When was the Eiffel Tower finished?"

FAMILIES = [("llama", "llama3"), ("qwen2", "qwen3"), ("mistral", "smollm2"), ("gemma3", "gemma3")]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f for f, _ in FAMILIES])
def family_model(request):
    family, tok_name = request.param
    tok = load_tokenizer(tok_name)
    return family, tiny_model(family, tok), tok


def _all_heads(model):
    cfg = model.config
    return [(l, h) for l in range(cfg.num_hidden_layers) for h in range(cfg.num_attention_heads)]


def test_captured_rows_equal_eager_attentions(family_model):
    """Every head's captured query rows equal eager output_attentions (whole prompt, no cache)."""
    family, model, tok = family_model
    prompt = build_prompt(tok, [as_passage(p) for p in PASSAGES], QUERY)
    heads = HeadSet(tuple(_all_heads(model)))
    plan = CapturePlan.build(model, heads)
    a, b = prompt.query_span
    s = prompt.suffix_start
    rows = {"query": slice(a, b), "suffix": slice(s, len(prompt))}
    with torch.no_grad(), AttentionPass(model, plan, rows) as p:
        p.run(input_ids=torch.tensor([list(prompt.input_ids)]), use_cache=False)
    ref = eager_attentions(model, list(prompt.input_ids))
    for layer in range(model.config.num_hidden_layers):
        for group, (lo, hi) in (("query", (a, b)), ("suffix", (s, len(prompt)))):
            expected = ref[layer][0, :, lo:hi].float().mean(dim=1)  # [H, K]
            got = p.masses[group][layer]
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the config is restored after the capture
    assert model.config._attn_implementation == "sdpa"


def test_scores_equal_slow_reference(family_model):
    """Cached prefix + query suffix + null query + early exit == full eager forwards, per head."""
    family, model, tok = family_model
    heads = [(1, 0), (1, 3), (0, 2), (2, 1)]
    scorer = QRHeadScorer.from_model(model, tok, heads=heads)
    hs = scorer.head_masses(QUERY, PASSAGES)
    ref_score, ref_real, ref_null = reference_scores(model, tok, PASSAGES, QUERY, heads)
    np.testing.assert_allclose(hs.real, ref_real, atol=1e-5)
    np.testing.assert_allclose(hs.null, ref_null, atol=1e-5)
    np.testing.assert_allclose(scorer.score(QUERY, PASSAGES), ref_score, atol=1e-5)
    # the attention is not uniform: the check above compares real, distinct numbers
    assert np.ptp(ref_real) > 1e-3


def test_as_given_order_matches_reference(family_model):
    family, model, tok = family_model
    heads = [(0, 1), (2, 2)]
    scorer = QRHeadScorer.from_model(model, tok, heads=heads, candidate_order="as_given")
    real, _ = reference_mass(model, tok, PASSAGES, QUERY, heads, order="as_given")
    np.testing.assert_allclose(scorer.with_options(calibrate=False).head_masses(QUERY, PASSAGES).real, real, atol=1e-5)


def test_early_exit_gives_identical_scores(family_model):
    """A head's mass is the same whether the forward stops at its layer or runs to the last layer."""
    family, model, tok = family_model
    last = model.config.num_hidden_layers - 1
    shallow = QRHeadScorer.from_model(model, tok, heads=[(1, 0), (1, 2)])
    deep = QRHeadScorer.from_model(model, tok, heads=[(1, 0), (1, 2), (last, 0)])
    a = shallow.head_masses(QUERY, PASSAGES)
    b = deep.head_masses(QUERY, PASSAGES)
    np.testing.assert_allclose(a.real, b.real[:2], atol=1e-6)
    np.testing.assert_allclose(a.null, b.null[:2], atol=1e-6)


def test_gqa_heads_sharing_a_kv_head(family_model):
    """Heads in one KV group and in different groups, in any order, keep their own rows."""
    family, model, tok = family_model
    heads = [(2, 3), (2, 0), (2, 1), (2, 2)]
    scorer = QRHeadScorer.from_model(model, tok, heads=heads)
    real, _ = reference_mass(model, tok, PASSAGES, QUERY, heads)
    np.testing.assert_allclose(scorer.with_options(calibrate=False).head_masses(QUERY, PASSAGES).real, real, atol=1e-5)


def test_sliding_window_limits_attention():
    """With a window shorter than the prompt, far passages get no attention on sliding layers."""
    tok = load_tokenizer("smollm2")
    model = tiny_model("mistral", tok, sliding_window=16)
    scorer = QRHeadScorer.from_model(model, tok, heads=[(0, 0), (1, 1)], candidate_order="as_given")
    hs = scorer.with_options(calibrate=False).head_masses(QUERY, PASSAGES)
    real, _ = reference_mass(model, tok, PASSAGES, QUERY, [(0, 0), (1, 1)], order="as_given")
    np.testing.assert_allclose(hs.real, real, atol=1e-5)
    assert hs.real[:, 0].max() == 0.0  # the first passage is outside every query token's window


def test_eager_base_implementation_is_wrapped_too():
    tok = load_tokenizer("llama3")
    model = tiny_model("llama", tok, attn="eager")
    scorer = QRHeadScorer.from_model(model, tok, heads=[(1, 1), (3, 0)])
    ref, _, _ = reference_scores(model, tok, PASSAGES, QUERY, [(1, 1), (3, 0)])
    np.testing.assert_allclose(scorer.score(QUERY, PASSAGES), ref, atol=1e-5)
    assert model.config._attn_implementation == "eager"


def test_head_mask_equals_zeroing_the_heads_slice_before_o_proj():
    """Masking through the wrapper == an independent module hook that zeroes the head's o_proj input."""
    tok = load_tokenizer("llama3")
    model = tiny_model("llama", tok)
    ids = torch.tensor([list(build_prompt(tok, [as_passage(p) for p in PASSAGES], QUERY).input_ids)])
    d = model.config.hidden_size // model.config.num_attention_heads
    plan = CapturePlan.build(model, None)
    with torch.no_grad(), HeadMaskPass(model, plan, mask=HeadSet(((1, 2), (3, 0), (3, 3)))) as p:
        masked = p.run(input_ids=ids).logits
    def zero(heads):
        def hook(module, args):
            x = args[0].clone()
            for h in heads:
                x[..., h * d:(h + 1) * d] = 0
            return (x,)
        return hook
    hooks = [model.model.layers[1].self_attn.o_proj.register_forward_pre_hook(zero([2])),
             model.model.layers[3].self_attn.o_proj.register_forward_pre_hook(zero([0, 3]))]
    try:
        with torch.no_grad():
            expected = model(ids).logits
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        plain = model(ids).logits
    torch.testing.assert_close(masked, expected, atol=1e-5, rtol=1e-4)
    assert (masked - plain).abs().max() > 1e-3


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_attention_implementation_shim_reads_what_the_public_setter_set(attn):
    """engine/compat.py reads transformers' private config attribute (there is no public getter); this runs
    on the lowest and the newest transformers CI installs, and a capture leaves the model as it found it."""
    from qrhead_integrations.engine.compat import attn_implementation

    tok = load_tokenizer("smollm2")
    model = tiny_model("llama", tok, layers=2, attn=attn)
    assert attn_implementation(model) == attn
    other = "eager" if attn == "sdpa" else "sdpa"
    model.set_attn_implementation(other)
    assert attn_implementation(model) == other
    plan = CapturePlan.build(model, HeadSet(((0, 0), (1, 1))))
    with AttentionPass(model, plan, rows=None):
        assert attn_implementation(model).startswith("qrhead_")
    assert attn_implementation(model) == other
