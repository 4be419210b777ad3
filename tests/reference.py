"""An independent, slow reference of QRscore + calibration: one full eager forward per prompt.

No KV cache, no early exit, no custom attention function: transformers' own eager attention with
``output_attentions=True``, repeated KV heads and all. Only the prompt and its token spans are shared
with the engine (the span code has its own tests, against the decoded text).
"""

from __future__ import annotations

import numpy as np
import torch

from qrhead_integrations.engine.prompt import as_passage, build_prompt


def eager_attentions(model, input_ids: list[int]):
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(torch.tensor([input_ids]), output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation(impl)
    return out.attentions


def reference_mass(model, tokenizer, passages, query, heads, order="reversed"):
    """``[len(heads), N]`` attention mass, input order, for one query."""
    items = [as_passage(p) for p in passages]
    perm = list(range(len(items)))[::-1] if order == "reversed" else list(range(len(items)))
    prompt = build_prompt(tokenizer, [items[i] for i in perm], query)
    att = eager_attentions(model, list(prompt.input_ids))
    a, b = prompt.query_span
    out = np.zeros((len(heads), len(items)))
    for r, (layer, head) in enumerate(heads):
        rows = att[layer][0, head, a:b].double().mean(dim=0)
        for pos, (s, e) in enumerate(prompt.passage_spans):
            out[r, perm[pos]] = rows[s:e].sum().item()
    return out, prompt


def reference_scores(model, tokenizer, passages, query, heads, null="N/A", order="reversed"):
    real, _ = reference_mass(model, tokenizer, passages, query, heads, order)
    base, _ = reference_mass(model, tokenizer, passages, null, heads, order)
    return (real - base).mean(axis=0), real, base
