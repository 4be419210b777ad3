"""Capture the attention of selected heads through transformers' attention interface.

No modeling code is copied: a wrapper is registered with ``AttentionInterface`` (and the matching
mask function with ``AttentionMaskInterface``) under ``qrhead_<base>``, where ``<base>`` is the
implementation the model already uses (``sdpa``, ``flash_attention_2``, ``eager``...). While a
:func:`capturing` context is active, the model's configs point at the wrapper; outside it they are
restored, so a caller's model (for example a generator shared through ``from_model``) is left as it was.

Inside the wrapper the model's own attention output is always computed by the base implementation.
Only for layers that hold selected heads, and only for those heads and for the query rows of the
current forward, the softmax over all keys is recomputed in float32 (keys of a grouped-query head
are read from their shared KV head, never repeated). The result kept per layer is the attention
averaged over the query rows, one value per key: O(heads x keys) memory. After the deepest selected
layer the forward is stopped by an exception, so later layers and the LM head never run.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

WRAPPER_PREFIX = "qrhead_"


class StopForward(Exception):
    """Raised inside the forward once the deepest layer that matters has run."""


@dataclass
class LayerHeads:
    """Selected heads of one layer, grouped by the KV head they read."""

    heads: tuple[int, ...]  # query-head indices, in capture order
    groups: tuple[tuple[int, torch.Tensor, torch.Tensor], ...] = ()  # (kv_head, out rows, q heads)

    @classmethod
    def build(cls, heads: Sequence[int], num_heads: int, num_kv_heads: int) -> LayerHeads:
        per_kv = num_heads // num_kv_heads
        by_kv: dict[int, list[tuple[int, int]]] = {}
        for pos, h in enumerate(heads):
            by_kv.setdefault(h // per_kv, []).append((pos, h))
        groups = tuple(
            (
                kv,
                torch.tensor([p for p, _ in items], dtype=torch.long),
                torch.tensor([h for _, h in items], dtype=torch.long),
            )
            for kv, items in sorted(by_kv.items())
        )
        return cls(tuple(heads), groups)


@dataclass
class CapturePlan:
    """What the wrapper does during one forward of one model."""

    module_ids: frozenset[int]
    layers: dict[int, LayerHeads]
    order: tuple[tuple[int, int], ...] = ()  # (layer, head) order of the rows handed back
    stop_layer: int | None = None
    rows: slice | None = None  # query rows (of this forward's tokens) to capture; None: capture nothing
    out: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [heads, keys] float32
    reached_stop: bool = False
    reduce: str = "mean"  # "mean": attention averaged over rows; "argmax": most attended key per row
    mask: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> heads whose output is zeroed


_ACTIVE: contextvars.ContextVar[CapturePlan | None] = contextvars.ContextVar("qrhead_plan", default=None)


def _base_function(name: str, module: torch.nn.Module):
    if name == "eager":
        # Each modeling file defines its own eager attention (some add soft-capping or sinks).
        fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        return fn if fn is not None else ALL_ATTENTION_FUNCTIONS["sdpa"]
    return ALL_ATTENTION_FUNCTIONS[name]


def _make_wrapper(base: str):
    def qrhead_attention(module, query, key, value, attention_mask, **kwargs):
        plan = _ACTIVE.get()
        if plan is None or id(module) not in plan.module_ids:
            return _base_function(base, module)(module, query, key, value, attention_mask, **kwargs)
        layer = module.layer_idx
        selected = plan.layers.get(layer)
        if selected is not None and plan.rows is not None:
            plan.out[layer] = head_attention_rows(
                module, query, key, attention_mask, plan.rows, selected, kwargs, plan.reduce
            )
        if plan.stop_layer is not None and layer >= plan.stop_layer:
            plan.reached_stop = True
            raise StopForward
        output, weights = _base_function(base, module)(module, query, key, value, attention_mask, **kwargs)
        masked = plan.mask.get(layer)
        if masked is not None:  # output is [batch, tokens, heads, head_dim]
            output = output.clone()
            output[:, :, masked.to(output.device)] = 0
        return output, weights

    qrhead_attention.__name__ = f"qrhead_attention_{base}"
    return qrhead_attention


_REGISTER_LOCK = threading.Lock()


def wrapper_name(base: str | None) -> str:
    """Register (once) and return the wrapper's name for a base attention implementation."""
    base = base or "eager"
    if base.startswith(WRAPPER_PREFIX):
        return base
    if base.startswith("paged|"):
        base = base.removeprefix("paged|")
    if base != "eager" and base not in ALL_ATTENTION_FUNCTIONS:
        raise ValueError(f"attention implementation {base!r} is not registered in transformers")
    name = f"{WRAPPER_PREFIX}{base}"
    with _REGISTER_LOCK:
        if name not in AttentionInterface._global_mapping:
            AttentionInterface.register(name, _make_wrapper(base))
            if base in ALL_MASK_ATTENTION_FUNCTIONS:
                mask = ALL_MASK_ATTENTION_FUNCTIONS[base]
            elif "flash" in base:
                mask = ALL_MASK_ATTENTION_FUNCTIONS["flash_attention_2"]
            else:
                mask = ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
            AttentionMaskInterface.register(name, mask)
    return name


def head_attention_rows(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: Any,
    rows: slice,
    selected: LayerHeads,
    kwargs: dict[str, Any],
    reduce: str = "mean",
) -> torch.Tensor:
    """Post-softmax attention of the selected heads, averaged over ``rows``: ``[heads, keys]``.

    With ``reduce="argmax"``: the index of the most attended key for each row, ``[heads, rows]``.

    ``query`` is ``[1, H, Q, D]`` (after RoPE), ``key`` is ``[1, KV, K, D]`` with the cached keys
    included; the last ``Q`` keys belong to this forward's tokens.
    """
    if query.shape[0] != 1:
        raise ValueError("attention capture supports batch size 1")
    q_len, n_keys = query.shape[2], key.shape[2]
    q = query[0, :, rows]  # [H, R, D]
    n_rows = q.shape[1]
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = getattr(module, "scaling", query.shape[-1] ** -0.5)
    softcap = kwargs.get("softcap")
    sinks = kwargs.get("s_aux")

    keep, additive = _row_mask(module, attention_mask, rows, q_len, n_keys, n_rows, query.device)

    if reduce == "argmax":
        out = torch.empty((len(selected.heads), n_rows), dtype=torch.long, device=query.device)
    else:
        out = torch.empty((len(selected.heads), n_keys), dtype=torch.float32, device=query.device)
    for kv_head, out_pos, q_heads in selected.groups:
        qh = q.index_select(0, q_heads.to(q.device)).float()  # [n, R, D]
        k = key[0, kv_head].float()  # [K, D]
        logits = torch.matmul(qh, k.transpose(0, 1)) * scaling  # [n, R, K]
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        if additive is not None:
            logits = logits + additive
        if keep is not None:
            logits = logits.masked_fill(~keep, float("-inf"))
        if sinks is not None:
            sink = sinks.reshape(-1)[q_heads.to(sinks.device)].float().to(logits.device)
            sink = sink[:, None, None].expand(-1, n_rows, 1)
            probs = torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :-1]
        else:
            probs = torch.softmax(logits, dim=-1)
        out[out_pos.to(out.device)] = probs.argmax(dim=-1) if reduce == "argmax" else probs.mean(dim=1)
    return out


def _row_mask(module, attention_mask, rows, q_len, n_keys, n_rows, device):
    """(boolean keep mask, additive mask) for the captured rows, each ``[R, K]`` or None."""
    if isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 4:
        if attention_mask.shape[-1] == n_keys and attention_mask.shape[-2] == q_len:
            m = attention_mask[0, 0, rows]
            if m.dtype == torch.bool:
                return m.to(device), None
            return None, m.float().to(device)
    # No usable 4D mask (SDPA skipped it, flash, flex): build the causal (and sliding-window) mask.
    first_row = rows.start or 0
    q_pos = torch.arange(n_rows, device=device) + (n_keys - q_len + first_row)
    k_pos = torch.arange(n_keys, device=device)
    keep = k_pos[None, :] <= q_pos[:, None]
    window = getattr(module, "sliding_window", None)
    if isinstance(window, int) and window > 0:
        keep = keep & (k_pos[None, :] > q_pos[:, None] - window)
    if isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 2:
        pad = attention_mask[0, -n_keys:].to(device=device, dtype=torch.bool)
        keep = keep & pad[None, :]
    return keep, None


# --- switching a model onto the wrapper ---------------------------------------------------------


def _configs_of(model: torch.nn.Module) -> list[Any]:
    seen: dict[int, Any] = {}
    stack = [model.config]
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation_internal"):
            stack.append(cfg)
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen[id(cfg)] = cfg
        for key in getattr(cfg, "sub_configs", {}) or {}:
            sub = getattr(cfg, key, None)
            if sub is not None and hasattr(sub, "_attn_implementation_internal"):
                stack.append(sub)
    return list(seen.values())


def attention_module_ids(model: torch.nn.Module) -> frozenset[int]:
    """Modules that call the attention interface (they carry an integer ``layer_idx``)."""
    ids = frozenset(
        id(m)
        for m in model.modules()
        if isinstance(getattr(m, "layer_idx", None), int)
        and any(hasattr(m, p) for p in ("q_proj", "qkv_proj", "query_key_value", "c_attn", "Wqkv", "query"))
    )
    if not ids:
        raise ValueError(
            f"{type(model).__name__}: no attention modules with a layer index found; "
            "this architecture does not use transformers' attention interface"
        )
    return ids


_MODEL_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """One re-entrant lock per model object: captures on one model run one at a time."""
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def capturing(model: torch.nn.Module, plan: CapturePlan) -> Iterator[CapturePlan]:
    """Route ``model``'s attention through the wrapper and activate ``plan`` for this context."""
    with model_lock(model):
        configs = _configs_of(model)
        saved = [(cfg, cfg._attn_implementation_internal) for cfg in configs]
        token = _ACTIVE.set(plan)
        try:
            for cfg, impl in saved:
                if isinstance(impl, dict):
                    continue
                cfg._attn_implementation_internal = wrapper_name(impl)
            yield plan
        finally:
            for cfg, impl in saved:
                cfg._attn_implementation_internal = impl
            _ACTIVE.reset(token)


def run_until_stop(model: torch.nn.Module, plan: CapturePlan, **inputs: Any) -> None:
    """Run ``model`` on ``inputs`` until the plan's stop layer (or to the end if it has none)."""
    plan.reached_stop = False
    try:
        model(**inputs)
    except StopForward:
        _offload_interrupted(model)
        return
    if plan.stop_layer is not None and not plan.reached_stop:
        raise RuntimeError(
            f"the forward never reached layer {plan.stop_layer}: the model's attention modules "
            "did not call the attention interface"
        )


def _offload_interrupted(model: torch.nn.Module) -> None:
    """Re-offload the weights of accelerate-offloaded modules whose forward was cut short.

    With a device map that offloads layers (to ``"cpu"`` or ``"disk"``), accelerate loads a module's
    weights onto its execution device before the module's forward and sends them back to the meta
    device after it. :class:`StopForward` skips the "after" of the layer it interrupts; this finishes
    it, so early exit does not leave an offloaded layer's weights resident on the device.
    """
    if getattr(model, "hf_device_map", None) is None:
        return
    for module in model.modules():
        hook = getattr(module, "_hf_hook", None)
        if hook is None:
            continue
        hooks = getattr(hook, "hooks", None) or (hook,)
        if not any(getattr(h, "offload", False) for h in hooks):
            continue
        recurse = any(getattr(h, "place_submodules", False) for h in hooks)
        if any(p.device.type != "meta" for p in module.parameters(recurse=recurse)):
            hook.post_forward(module, None)
