"""Needle in a haystack: copy-paste retrieval heads (Wu et al.) and head-masking accuracy.

A needle sentence is inserted at a given depth of a haystack of Paul Graham essays; the model is asked
the needle's question and decodes greedily. A head "copies" when, at a decoding step that outputs
token ``w``, its most attended key is a needle token equal to ``w``; its retrieval score is the share
of needle tokens it copied, averaged over trials (Wu et al., "Retrieval Head Mechanistically Explains
Long-Context Factuality"). Masking a head zeroes its attention output (through the same attention
wrapper as scoring); accuracy is the share of the needle's key words found in the answer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrhead_integrations.engine.capture import AttentionPass, CapturePlan
from qrhead_integrations.engine.heads import HeadSet
from qrhead_integrations.engine.kv import cache_kwargs, new_cache
from qrhead_integrations.engine.scoring import QRHeadScorer


@dataclass(frozen=True)
class Needle:
    sentence: str
    question: str
    keywords: tuple[str, ...]


NEEDLES = (
    Needle("The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
           "What is the best thing to do in San Francisco?", ("sandwich", "dolores park", "sunny")),
    Needle("The secret ingredient in Grandma Rosa's tomato soup is a spoonful of smoked paprika.",
           "What is the secret ingredient in Grandma Rosa's tomato soup?", ("smoked", "paprika")),
    Needle("The lighthouse keeper on Gull Island keeps a pet tortoise named Captain Biscuit.",
           "What is the name of the pet tortoise of the lighthouse keeper on Gull Island?", ("captain", "biscuit")),
)


def load_haystack(folder: str | Path) -> str:
    files = sorted(Path(folder).glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no .txt essays in {folder}")
    return "\n\n".join(p.read_text(encoding="utf-8").strip() for p in files)


def build_context(haystack: str, tokenizer: Any, needle: Needle, context_tokens: int, depth: float) -> str:
    """``context_tokens`` of haystack with the needle inserted at a sentence boundary near ``depth``."""
    enc = tokenizer(haystack, add_special_tokens=False, return_offsets_mapping=True)
    budget = max(1, context_tokens - len(tokenizer(needle.sentence, add_special_tokens=False)["input_ids"]))
    if budget >= len(enc["input_ids"]):
        raise ValueError(f"the haystack has fewer than {context_tokens} tokens")
    text = haystack[: enc["offset_mapping"][budget - 1][1]]
    cut = int(len(text) * depth)
    stop = text.rfind(". ", 0, cut)
    cut = stop + 2 if stop >= 0 and depth > 0 else (0 if depth <= 0 else cut)
    return text[:cut] + needle.sentence + " " + text[cut:]


def prompt_ids(tokenizer: Any, context: str, needle: Needle) -> tuple[list[int], tuple[int, int]]:
    """Chat prompt ids and the token span of the needle sentence inside them."""
    content = (f"{context}\n\nBased on the text above, answer the question briefly.\nQuestion: {needle.question}")
    messages = [{"role": "user", "content": content}]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    else:
        text = content + "\nAnswer:"
        enc = tokenizer(text, return_offsets_mapping=True)
    start = text.index(needle.sentence)
    end = start + len(needle.sentence)
    # tokens whose first non-whitespace character lies in the needle (" The" starts with a space)
    toks = [i for i, (a, b) in enumerate(enc["offset_mapping"])
            if b > a and start <= a + len(text[a:b]) - len(text[a:b].lstrip()) < end]
    return list(enc["input_ids"]), (toks[0], toks[-1] + 1)


@dataclass
class Trial:
    answer: str
    accuracy: float
    copies: np.ndarray | None  # [layers, heads] share of needle tokens copied (detection runs only)


class HeadMaskPass(AttentionPass):
    """An attention pass that zeroes the output of the ``mask`` heads (a head ablation), and records the
    plan's heads' attention on ``rows`` like any pass."""

    def __init__(self, model: torch.nn.Module, plan: CapturePlan, rows: dict[str, slice] | None = None, *,
                 mask: HeadSet | None = None) -> None:
        super().__init__(model, plan, rows)
        self.mask = {l: torch.tensor(h, dtype=torch.long) for l, h in mask.layers.items()} if mask else {}

    def on_output(self, layer: int, output: torch.Tensor) -> torch.Tensor:
        heads = self.mask.get(layer)
        if heads is None:
            return output
        output = output.clone()  # [batch, tokens, heads, head_dim]
        output[:, :, heads.to(output.device)] = 0
        return output


@torch.inference_mode()
def run_trial(scorer: QRHeadScorer, ids: list[int], needle_span: tuple[int, int], needle: Needle, *,
              max_new_tokens: int = 32, detect: bool = False, mask: HeadSet | None = None) -> Trial:
    """Greedy decoding with optional head masking and optional copy-paste detection on all heads."""
    model, tok, shape = scorer.model, scorer.tokenizer, scorer.shape
    plan = CapturePlan.build(model, HeadSet.all_heads(shape) if detect else None, stop_early=False)
    rows = {"last": slice(-1, None)} if detect else None  # the row of the token being decoded
    device = scorer.device
    cache = new_cache(model)
    a, b = needle_span
    needle_ids = ids[a:b]
    copied = [[set() for _ in range(shape.num_heads)] for _ in range(shape.num_layers)]
    inputs = torch.tensor([ids], device=device)
    generated: list[int] = []
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    eos = set(gen_eos if isinstance(gen_eos, list) else [gen_eos]) | {tok.eos_token_id}
    eos.discard(None)
    with HeadMaskPass(model, plan, rows, mask=mask) as p:
        for _ in range(max_new_tokens):
            p.reset()
            out = p.run(input_ids=inputs, logits_to_keep=1, **cache_kwargs(model, cache))
            token = int(out.logits[0, -1].argmax())
            if detect:
                for layer, mass in p.masses["last"].items():
                    for head, j in enumerate(mass.argmax(dim=1).tolist()):
                        if a <= j < b and ids[j] == token:
                            copied[layer][head].add(j)
            if token in eos:
                break
            generated.append(token)
            inputs = torch.tensor([[token]], device=device)
    answer = tok.decode(generated, skip_special_tokens=True)
    low = answer.lower()
    accuracy = sum(k in low for k in needle.keywords) / len(needle.keywords)
    copies = None
    if detect:
        copies = np.array([[len(s) / max(1, len(needle_ids)) for s in row] for row in copied])
    return Trial(answer, accuracy, copies)


def trial_grid(lengths: list[int], depths: list[float], needles: int) -> list[tuple[int, float, Needle]]:
    return [(n, d, NEEDLES[i]) for n, d, i in itertools.product(lengths, depths, range(min(needles, len(NEEDLES))))]


def detect_retrieval_heads(scorer: QRHeadScorer, haystack: str, grid: list[tuple[int, float, Needle]],
                           top_k: int = 16, show_progress: bool = True) -> tuple[HeadSet, list[Trial]]:
    """Top heads by mean copy-paste score over the grid of trials."""
    from tqdm.auto import tqdm

    from qrhead_integrations.engine.detection import config_fingerprint, select_top_heads

    trials = []
    for n, depth, needle in tqdm(grid, desc="retrieval heads", disable=not show_progress):
        ids, span = prompt_ids(scorer.tokenizer, build_context(haystack, scorer.tokenizer, needle, n, depth), needle)
        trials.append(run_trial(scorer, ids, span, needle, detect=True))
    per = np.stack([t.copies for t in trials])
    info = {"method": "copy-paste retrieval score (Wu et al.) on needle-in-a-haystack",
            "data": f"pg-essays haystacks, {len(grid)} trials: lengths {sorted({g[0] for g in grid})}, "
                    f"depths {sorted({g[1] for g in grid})}, {len({g[2] for g in grid})} needles",
            "examples": len(grid), "mean_accuracy": float(np.mean([t.accuracy for t in trials])),
            "config_fingerprint": config_fingerprint(scorer.model.config)}
    result = select_top_heads(per, top_k, name="retrieval", model=scorer.model_name, shape=scorer.shape, info=info)
    return result.head_set, trials


def masked_accuracy(scorer: QRHeadScorer, haystack: str, grid: list[tuple[int, float, Needle]],
                    mask: HeadSet | None, show_progress: bool = True, desc: str = "needle") -> list[Trial]:
    from tqdm.auto import tqdm

    out = []
    for n, depth, needle in tqdm(grid, desc=desc, disable=not show_progress):
        ids, span = prompt_ids(scorer.tokenizer, build_context(haystack, scorer.tokenizer, needle, n, depth), needle)
        out.append(run_trial(scorer, ids, span, needle, mask=mask))
    return out
