"""What the speed/memory benchmark runs: models, prompts of a given length, and the compared methods.

Every method is prepared once (:func:`prepare`) and returns a ``run()`` callable whose cost is what is
timed. The methods:

``engine``
    ``QRHeadScorer.score(query, passages)``: the library as a user calls it (prompt building, prefix
    forward with early exit after the deepest selected layer, real query and null query "N/A" on the
    cached prefix, calibrated scores).
``full_forward``
    The floor: one plain forward of the whole model over the same prompt with the model's own
    attention (SDPA on CPU), ``logits_to_keep=1`` (logits of the last position only), no KV cache.
``forward_to_deepest``
    The same forward, stopped after the decoder layer holding the deepest selected head (a forward
    hook raises): the least any method that reads that layer's attention must compute.
``naive``
    Eager attention with ``output_attentions=True`` over all layers (every layer's full n x n map for
    every head is returned), for the real and the null query, scores read from the maps.
``reference``
    The published algorithm (QRHead / ICR reference code), written from its description: a full forward
    over all layers keeping the whole KV cache, the post-RoPE query rows of the query span captured in
    every layer; afterwards softmax(q K^T) recomputed for all layers and all heads with the KV heads
    repeated (``repeat_kv``); calibration by cropping the KV cache back to where the query starts and
    running the null query's suffix as a second pass; LM head skipped.
``rankgpt``
    A listwise generative re-ranker (RankGPT-style permutation generation, greedy) with the same model.
``multiquery``
    ``scorer.encode(passages)`` then several ``score(query)`` calls: cost of each extra query.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrhead_integrations.engine.kv import cache_kwargs

REPO = Path(__file__).resolve().parents[1]
LLAMA3_TOKENIZER = REPO / ".cache" / "tokenizers" / "llama3"

METHODS = ("engine", "full_forward", "forward_to_deepest", "naive", "reference")
EXTRA_METHODS = ("rankgpt", "multiquery")

# Head sets used when the model has no registered (shipped) head set: the 16 heads a prototype
# detected on SciFact train claims (calibrated gold-passage mass; deepest layers 23 of 30 and 16 of 24).
FIXED_HEADS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct":
        "17-0,18-6,17-4,22-7,17-2,21-7,8-0,23-0,21-8,14-3,15-7,22-4,23-2,23-7,15-8,5-6",
    "Qwen/Qwen2.5-Coder-0.5B-Instruct":
        "7-7,13-0,16-7,13-13,9-10,3-0,16-2,15-9,16-0,11-2,10-12,11-10,13-6,14-9,9-13,14-13",
    "llama3-tiny-random": "1-0,2-3,2-1",
}

# Random-weight models of published architectures, built from their configs: their speed and memory
# are the real model's, their scores are not.
SYNTHETIC = {
    "llama3-8b-random": dict(  # Llama-3.1-8B-Instruct's sizes
        hf_id="meta-llama/Llama-3.1-8B-Instruct", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
    ),
    "llama3-tiny-random": dict(  # the same architecture and tokenizer, tiny: to test this code path on CPU
        hf_id="llama3-tiny-random", vocab_size=128256, hidden_size=128, intermediate_size=256,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=131072,
    ),
}


# --- models ------------------------------------------------------------------------------------


@dataclass
class BenchModel:
    name: str  # as given on the command line
    hf_id: str  # for the head-set registry and the report
    model: Any
    tokenizer: Any
    heads: Any  # HeadSet
    heads_source: str
    context: int
    device: torch.device
    dtype: torch.dtype
    attn: str
    load_seconds: float = 0.0
    extended_context: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        cfg = self.model.config.get_text_config()
        return (cfg.num_hidden_layers, cfg.num_attention_heads,
                getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)


def default_attn(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            from transformers.utils import is_flash_attn_2_available

            if is_flash_attn_2_available():
                return "flash_attention_2"
        except ImportError:  # pragma: no cover
            pass
    return "sdpa"


def load_bench_model(name: str, device: str = "cpu", dtype: str | None = None, attn: str | None = None,
                     heads: str | None = None) -> BenchModel:
    """A packaged / hub / local model through the library's loader, or a random-weight synthetic model."""
    import time

    from qrhead_integrations.engine.heads import HeadSetNotFoundError, ModelShape, resolve_heads
    from qrhead_integrations.engine.loading import load_model, resolve_device, resolve_dtype

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    attn = attn or default_attn(dev)
    t0 = time.perf_counter()
    if name in SYNTHETIC:
        import transformers as tf

        spec = dict(SYNTHETIC[name])
        hf_id = spec.pop("hf_id")
        cfg = tf.LlamaConfig(
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
            attn_implementation=attn, **spec,
        )
        torch.manual_seed(0)
        with torch.device(dev):
            model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype)
        model.eval()
        if not (LLAMA3_TOKENIZER / "tokenizer.json").is_file():
            raise SystemExit(f"{LLAMA3_TOKENIZER} missing: run scripts/fetch_test_tokenizers.sh")
        tokenizer = tf.AutoTokenizer.from_pretrained(str(LLAMA3_TOKENIZER))
    else:
        loaded = load_model(name, device=str(dev), dtype=torch_dtype, attn_implementation=attn)
        model, tokenizer, hf_id = loaded.model, loaded.tokenizer, loaded.name
    load_seconds = time.perf_counter() - t0
    shape = ModelShape.from_config(model.config)
    if heads:
        head_set, source = resolve_heads(heads, shape, hf_id), f"given: {heads}"
    else:
        try:
            head_set = resolve_heads(None, shape, hf_id)
            source = f"registered ({head_set.name})"
        except HeadSetNotFoundError:
            if hf_id not in FIXED_HEADS:
                raise
            head_set = resolve_heads(FIXED_HEADS[hf_id], shape, hf_id)
            source = ("fixed: no head set is registered for this model; the 16 heads a prototype detected on "
                      "SciFact train claims (calibrated gold-passage mass)")
    context = int(getattr(model.config.get_text_config(), "max_position_embeddings", 0) or 1 << 30)
    return BenchModel(name, hf_id, model, tokenizer, head_set, source, context, dev, torch_dtype, attn, load_seconds)


def extend_context(bm: BenchModel, tokens: int) -> None:
    """Raise the context limit in memory (timing beyond the trained context only; scores are meaningless)."""
    cfg = bm.model.config.get_text_config()
    cfg.max_position_embeddings = tokens
    if bm.model.config is not cfg:
        bm.model.config.max_position_embeddings = tokens
    bm.tokenizer.model_max_length = tokens
    bm.extended_context = True


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    n = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise RuntimeError("decoder layers not found")


def base_model(model: Any) -> Any:
    """The transformer without the LM head."""
    return getattr(model, "model", None) or model.get_decoder()


# --- text and prompts --------------------------------------------------------------------------


def _shared_data() -> Path | None:
    try:
        from qrhead_integrations.eval.data import shared_data_dir

        return shared_data_dir()
    except Exception:  # pragma: no cover
        return None


def text_source() -> tuple[str, Iterator[str]]:
    """(description, endless stream of documents): SciFact abstracts, else PG essays, else synthetic text."""
    data = _shared_data()
    if data is not None and (data / "scifact" / "corpus.jsonl").is_file():
        def scifact() -> Iterator[str]:
            while True:
                with open(data / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
                    for line in f:
                        row = json.loads(line)
                        yield f"{row.get('title', '')}. {row.get('text', '')}".strip()
        return "SciFact abstracts (BEIR corpus, file order)", scifact()
    if data is not None and (data / "pg-essays").is_dir():
        files = sorted((data / "pg-essays").glob("*.txt"))

        def essays() -> Iterator[str]:
            while True:
                for p in files:
                    for para in p.read_text(encoding="utf-8", errors="replace").split("\n\n"):
                        if para.strip():
                            yield " ".join(para.split())
        return "Paul Graham essays", essays()
    words = ("cell protein gene expression tumor patients study analysis increased reduced levels associated "
             "response treatment mice receptor signaling pathway clinical risk function model data effect "
             "samples human disease activity cancer role factor evidence results binding mutations").split()

    def synthetic() -> Iterator[str]:
        rng = random.Random(0)
        while True:
            yield " ".join(" ".join(rng.choice(words) for _ in range(rng.randint(8, 20))).capitalize() + "."
                           for _ in range(8))
    return "synthetic word salad (no shared data found)", synthetic()


def queries(n: int = 5) -> list[str]:
    data = _shared_data()
    path = data / "scifact" / "queries.jsonl" if data is not None else None
    out: list[str] = []
    if path is not None and path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = json.loads(line).get("text", "").strip()
                if text and len(text.split()) >= 6:
                    out.append(text)
                if len(out) >= n:
                    break
    fallback = ["Vitamin D deficiency is associated with an increased risk of cardiovascular disease.",
                "Tumor suppressor genes regulate cell growth in mice.",
                "Antibiotic resistance spreads through horizontal gene transfer.",
                "Sleep deprivation impairs memory consolidation in adults.",
                "Protein misfolding causes neurodegenerative disease."]
    return (out + fallback)[:n]


@dataclass
class Workload:
    """Passages packed to a target prompt length, the query, and the exact prompts the engine builds."""

    passages: list[str]
    query: str
    extra_queries: list[str]
    prompt: Any  # TokenizedPrompt, real query, passages in the engine's (reversed) order
    null_prompt: Any
    source: str
    heads: Any = None

    @property
    def tokens(self) -> int:
        return len(self.prompt)


def pack(tokenizer: Any, target_tokens: int, n_passages: int, n_queries: int = 5) -> Workload:
    """``n_passages`` passages cut from a stream of real text so the whole prompt has ~``target_tokens``."""
    from qrhead_integrations.engine.lexical import passage_bm25
    from qrhead_integrations.engine.placement import ranked_order
    from qrhead_integrations.engine.prompt import Passage, build_prompt

    qs = queries(n_queries)
    query = qs[0]
    source, docs = text_source()
    empty = len(build_prompt(tokenizer, [Passage("")] * n_passages, query))
    need = max(0, target_tokens - empty) + 64 * n_passages + 512
    text_parts: list[str] = []
    have = 0
    while have < need:
        doc = next(docs)
        text_parts.append(doc)
        have += max(1, len(doc) // 4)  # rough; checked below
    while True:
        stream = " ".join(text_parts)
        enc = tokenizer(stream, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) >= need:
            break
        text_parts.append(next(docs))
    offsets = enc["offset_mapping"]

    def make(quota: int) -> list[str]:
        out = []
        for i in range(n_passages):
            a, b = i * quota, (i + 1) * quota
            if quota <= 0:
                out.append("")
                continue
            out.append(stream[offsets[a][0]:offsets[b - 1][1]].strip())
        return out

    quota = max(0, (target_tokens - empty) // max(1, n_passages))
    for _ in range(8):
        passages = make(quota)
        length = len(build_prompt(tokenizer, [Passage(t) for t in reversed(passages)], query))
        diff = target_tokens - length
        if -n_passages <= diff <= 0 or (0 <= diff < n_passages and quota > 0):
            break
        quota = max(0, quota + (diff // n_passages if diff > 0 else -(-diff // n_passages)))
    passages = make(quota)
    prompt = build_prompt(tokenizer, [Passage(t) for t in reversed(passages)], query)
    while len(prompt) > target_tokens and quota > 0:  # never exceed the target (the context limit)
        quota -= 1
        passages = make(quota)
        prompt = build_prompt(tokenizer, [Passage(t) for t in reversed(passages)], query)
    # Hand the passages over in the order candidate_order="ranked" places them for the query (BM25 over
    # them, best first): 'ranked' and 'reversed' then build this same prompt, so every method runs it.
    placed = [Passage(t) for t in passages]
    passages = [passages[i] for i in ranked_order(passage_bm25(query, placed), placed)]
    prompt = build_prompt(tokenizer, [Passage(t) for t in reversed(passages)], query)
    null_prompt = build_prompt(tokenizer, [Passage(t) for t in reversed(passages)], "N/A")
    return Workload(passages, query, qs[1:], prompt, null_prompt, source)


# --- the methods -------------------------------------------------------------------------------


def _ids(prompt: Any, device: torch.device) -> torch.Tensor:
    return torch.tensor([list(prompt.input_ids)], dtype=torch.long, device=device)


def _span_mass(rows_mean: torch.Tensor, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """``rows_mean`` is ``[heads, keys]``; returns ``[heads, passages]`` summed over each passage's tokens."""
    rm = rows_mean.double().cpu()
    return np.stack([rm[:, a:b].sum(dim=1).numpy() for a, b in spans], axis=1)


def _head_average(per_head: np.ndarray, heads: Any) -> np.ndarray:
    """``[heads, passages]`` to ``[passages]``: the mean over the heads, weighted by the head set's fitted
    weights when it has them (as the engine combines them)."""
    if getattr(heads, "weights", None) is None:
        return per_head.mean(axis=0)
    return np.average(per_head, axis=0, weights=np.asarray(heads.weights, dtype=np.float64))


def _input_order(mass_prompt_order: np.ndarray) -> np.ndarray:
    return mass_prompt_order[..., ::-1].copy()  # the prompt holds the passages reversed


class _Stop(Exception):
    pass


def prepare(method: str, bm: BenchModel, wl: Workload) -> Callable[[], Any]:
    if method == "engine":
        from qrhead_integrations import QRHeadScorer

        scorer = QRHeadScorer.from_model(bm.model, bm.tokenizer, heads=bm.heads)
        return lambda: np.asarray(scorer.score(wl.query, wl.passages))
    if method == "full_forward":
        ids = _ids(wl.prompt, bm.device)

        @torch.inference_mode()
        def full() -> None:
            bm.model(input_ids=ids, use_cache=False, logits_to_keep=1)
        return full
    if method == "forward_to_deepest":
        ids = _ids(wl.prompt, bm.device)
        layer = decoder_layers(bm.model)[bm.heads.deepest_layer]

        def stop(*_: Any) -> None:
            raise _Stop

        @torch.inference_mode()
        def upto() -> None:
            handle = layer.register_forward_hook(stop)
            try:
                bm.model(input_ids=ids, use_cache=False, logits_to_keep=1)
            except _Stop:
                pass
            finally:
                handle.remove()
        return upto
    if method == "naive":
        return _naive(bm, wl)
    if method == "reference":
        return _reference(bm, wl)
    if method == "rankgpt":
        return _rankgpt(bm, wl)
    raise ValueError(f"unknown method {method!r}")


def naive_bytes(bm: BenchModel, tokens: int) -> int:
    """Memory the returned attention maps alone take: layers x heads x n x n values."""
    layers, heads, _ = bm.shape
    return layers * heads * tokens * tokens * torch.finfo(bm.dtype).bits // 8


def _naive(bm: BenchModel, wl: Workload) -> Callable[[], np.ndarray]:
    bm.model.set_attn_implementation("eager")
    heads = list(bm.heads.heads)

    @torch.inference_mode()
    def run() -> np.ndarray:
        masses = []
        for prompt in (wl.prompt, wl.null_prompt):
            out = bm.model(input_ids=_ids(prompt, bm.device), output_attentions=True, use_cache=False,
                           logits_to_keep=1)
            a, b = prompt.query_span
            rows = torch.stack([out.attentions[l][0, h, a:b].float().mean(dim=0) for l, h in heads])
            masses.append(_span_mass(rows, prompt.passage_spans))
            del out
        return _input_order(_head_average(masses[0] - masses[1], bm.heads))
    return run


# The reference's capture: an attention function registered under its own name that records the
# post-RoPE query rows of the query span in every layer, then calls the model's own attention.
_REF: dict[str, Any] = {"rows": None, "queries": {}}


def _reference_attention_name(base: str) -> str:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    name = f"benchref_{base}"  # not "qrhead_": that prefix is the engine's
    if name not in ALL_ATTENTION_FUNCTIONS.valid_keys():
        base_fn = ALL_ATTENTION_FUNCTIONS[base]

        def attention(module, query, key, value, attention_mask, **kwargs):
            rows = _REF["rows"]
            if rows is not None:
                _REF["queries"][module.layer_idx] = query[:, :, rows].clone()
            return base_fn(module, query, key, value, attention_mask, **kwargs)

        AttentionInterface.register(name, attention)
        mask_key = base if base in ALL_MASK_ATTENTION_FUNCTIONS else "sdpa"
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[mask_key])
    return name


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``[b, kv, n, d]`` -> ``[b, kv * n_rep, n, d]`` (each KV head repeated for its query heads)."""
    if n_rep == 1:
        return x
    b, kv, n, d = x.shape
    return x[:, :, None].expand(b, kv, n_rep, n, d).reshape(b, kv * n_rep, n, d)


def _reference(bm: BenchModel, wl: Workload) -> Callable[[], np.ndarray]:
    from transformers import DynamicCache

    base = bm.attn if bm.attn != "eager" else "sdpa"
    bm.model.set_attn_implementation(_reference_attention_name(base))
    layers, n_heads, n_kv = bm.shape
    attn_modules = {m.layer_idx: m for m in bm.model.modules()
                    if isinstance(getattr(m, "layer_idx", None), int) and hasattr(m, "q_proj")}
    sel = [l * n_heads + h for l, h in bm.heads.heads]
    real_ids, null_ids = list(wl.prompt.input_ids), list(wl.null_prompt.input_ids)
    common = 0
    while common < min(len(real_ids), len(null_ids)) and real_ids[common] == null_ids[common]:
        common += 1
    common = min(common, wl.prompt.query_span[0], wl.null_prompt.query_span[0])
    decoder = base_model(bm.model)

    def recompute(cache: Any, q_start: int, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        out = np.zeros((layers, n_heads, len(spans)))
        for l in range(layers):
            k = cache.layers[l].keys  # [1, KV, n, D]
            q = _REF["queries"].pop(l)  # [1, H, R, D]
            k = repeat_kv(k, n_heads // n_kv)  # [1, H, n, D]
            scaling = getattr(attn_modules[l], "scaling", q.shape[-1] ** -0.5)
            logits = torch.matmul(q, k.transpose(-1, -2)) * scaling  # [1, H, R, n]
            pos = torch.arange(q.shape[2], device=q.device) + q_start
            keep = torch.arange(k.shape[2], device=q.device)[None, :] <= pos[:, None]
            probs = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
            out[l] = _span_mass(probs[0].float().mean(dim=1), spans)
        return out

    @torch.inference_mode()
    def run() -> np.ndarray:
        cache = DynamicCache(config=bm.model.config)
        try:
            a, b = wl.prompt.query_span
            _REF["rows"], _REF["queries"] = slice(a, b), {}
            decoder(input_ids=_ids(wl.prompt, bm.device), **cache_kwargs(decoder, cache))
            real = recompute(cache, a, wl.prompt.passage_spans)
            # calibration: cut the cache back to where the query starts (transformers 5 crops by a
            # negative count of tokens to drop), then run the null query's suffix on it
            cache.crop(common - len(real_ids))
            a, b = wl.null_prompt.query_span
            _REF["rows"], _REF["queries"] = slice(a - common, b - common), {}
            decoder(input_ids=torch.tensor([null_ids[common:]], device=bm.device), **cache_kwargs(decoder, cache))
            null = recompute(cache, a, wl.null_prompt.passage_spans)
        finally:
            _REF["rows"], _REF["queries"] = None, {}
        per_head = (real - null).reshape(layers * n_heads, -1)  # every head of every layer
        return _input_order(_head_average(per_head[sel], bm.heads))
    return run


RANKGPT_SYSTEM = ("You are RankGPT, an intelligent assistant that can rank passages based on their relevancy "
                  "to the query.")


def rankgpt_messages(query: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """The RankGPT conversation: passages handed over one per turn, then the ranking instruction."""
    n = len(passages)
    msgs = [{"role": "system", "content": RANKGPT_SYSTEM},
            {"role": "user", "content": f"I will provide you with {n} passages, each indicated by number "
                                        f"identifier []. \nRank the passages based on their relevance to query: "
                                        f"{query}."},
            {"role": "assistant", "content": "Okay, please provide the passages."}]
    for i, p in enumerate(passages, start=1):
        msgs.append({"role": "user", "content": f"[{i}] {p}"})
        msgs.append({"role": "assistant", "content": f"Received passage [{i}]."})
    msgs.append({"role": "user", "content": (
        f"Search Query: {query}. \nRank the {n} passages above based on their relevance to the search query. "
        "The passages should be listed in descending order using identifiers. The most relevant passages "
        "should be listed first. The output format should be [] > [], e.g., [1] > [2]. Only respond with the "
        "ranking results, do not say any word or explain.")})
    return msgs


def parse_permutation(text: str, n: int) -> tuple[list[int], bool]:
    """Ids in the generated order (0-based), deduplicated, missing ones appended; and whether it was complete."""
    seen: list[int] = []
    for m in re.findall(r"\[(\d+)\]", text):
        i = int(m) - 1
        if 0 <= i < n and i not in seen:
            seen.append(i)
    complete = len(seen) == n
    return seen + [i for i in range(n) if i not in seen], complete


def _rankgpt(bm: BenchModel, wl: Workload) -> Callable[[], dict[str, Any]]:
    tok = bm.tokenizer
    msgs = rankgpt_messages(wl.query, wl.passages)
    if tok.chat_template:
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:
        text = "\n\n".join(m["content"] for m in msgs) + "\n\n"
        ids = tok(text, return_tensors="pt")["input_ids"]
    ids = ids.to(bm.device)
    n = len(wl.passages)
    # Time a complete permutation: generate exactly as many tokens as "[n] > ... > [1]" takes (small
    # models may stop early or ramble; a real re-ranker must emit all identifiers).
    target = " > ".join(f"[{i}]" for i in range(n, 0, -1))
    new_tokens = len(tok(target, add_special_tokens=False)["input_ids"]) + 1
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if isinstance(pad, list):
        pad = pad[0]

    @torch.inference_mode()
    def run() -> dict[str, Any]:
        out = bm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=pad)
        gen = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        perm, complete = parse_permutation(gen, n)
        return {"prompt_tokens": int(ids.shape[1]), "new_tokens": int(out.shape[1] - ids.shape[1]),
                "complete_permutation": complete, "first": perm[:3]}
    return run


@dataclass
class MultiQuery:
    first_s: float  # encode(passages) + the first query (prefix forward, null query, real query)
    extra_query_s: list[float] = field(default_factory=list)  # each further query on the same encoding


def multiquery(bm: BenchModel, wl: Workload, timer: Callable[[], float],
               candidate_order: str = "auto") -> MultiQuery:
    """``candidate_order="auto"``: the head set's placement (the embedded default's 'ranked' places by each
    query's BM25, so a query that places the passages differently pays their forward again); a fixed
    placement ('as_given', 'reversed') shares one forward among all queries."""
    from qrhead_integrations import QRHeadScorer

    scorer = QRHeadScorer.from_model(bm.model, bm.tokenizer, heads=bm.heads, candidate_order=candidate_order)
    t0 = timer()
    enc = scorer.encode(wl.passages)
    enc.score(wl.query)
    first = timer() - t0
    extra = []
    for q in wl.extra_queries:
        s = timer()
        enc.score(q)
        extra.append(timer() - s)
    return MultiQuery(first, extra)

