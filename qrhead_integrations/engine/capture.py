"""Read selected heads' attention through transformers' attention interface.

No modeling code is copied: a wrapper is registered with ``AttentionInterface`` (and the matching mask
function with ``AttentionMaskInterface``) under ``qrhead_<base>``, where ``<base>`` is the
implementation the model already uses (``sdpa``, ``flash_attention_2``, ``eager``...). While an
:class:`AttentionPass` is active, the model uses the wrapper (``model.set_attn_implementation``); outside
it the model's own implementation is set back, so a caller's model (for example a generator shared
through ``from_model``) is left as it was.

Two objects, kvpress style:

- :class:`CapturePlan` (immutable, built once per head set): which attention modules and heads to read
  and after which layer the forward may stop.
- :class:`AttentionPass` (one per forward, a context manager): what happens at each attention call. The
  default records, for each named group of query rows, the selected heads' post-softmax attention
  averaged over the group's rows, one value per key: ``masses[group][layer]`` is ``[heads, keys]``
  (O(heads x keys) memory). Subclasses (e.g. the needle experiments in ``eval``) override
  :meth:`AttentionPass.on_attention` / :meth:`AttentionPass.on_output`.

Inside the wrapper the model's own attention output is always computed by the base implementation. For
the selected heads only, and only for the captured rows, the softmax over all keys is recomputed in
float32 (keys of a grouped-query head are read from their shared KV head, never repeated). After the
plan's stop layer the forward is stopped by an exception, so later layers and the LM head never run.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from .compat import attn_implementation
from .errors import QRHeadRuntimeError, QRHeadValueError
from .heads import Head, HeadSet

WRAPPER_PREFIX = "qrhead_"


class StopForward(Exception):
    """Raised inside the forward once the deepest layer that matters has run."""


@dataclass(frozen=True)
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
            (kv, torch.tensor([p for p, _ in items], dtype=torch.long), torch.tensor([h for _, h in items], dtype=torch.long))
            for kv, items in sorted(by_kv.items())
        )
        return cls(tuple(heads), groups)


@dataclass(frozen=True)
class CapturePlan:
    """Which heads of which attention modules to read, and where the forward may stop. Immutable."""

    module_ids: frozenset[int]
    layers: Mapping[int, LayerHeads]
    order: tuple[Head, ...] = ()  # (layer, head) order of the rows handed back
    stop_layer: int | None = None

    @classmethod
    def build(cls, model: torch.nn.Module, heads: HeadSet | None, *, stop_early: bool = True,
              module_ids: frozenset[int] | None = None) -> CapturePlan:
        """A plan reading ``heads`` of ``model`` (None: read nothing, run the whole model)."""
        ids = module_ids if module_ids is not None else attention_module_ids(model)
        if heads is None:
            return cls(ids, {}, (), None)
        text = model.config.get_text_config()
        num_heads = text.num_attention_heads
        num_kv = getattr(text, "num_key_value_heads", None) or num_heads
        layers = {layer: LayerHeads.build(hs, num_heads, num_kv) for layer, hs in heads.layers.items()}
        return cls(ids, layers, heads.heads, heads.deepest_layer if stop_early else None)

    def stack(self, per_layer: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Per-layer ``[heads_of_layer, ...]`` results stacked in the plan's (layer, head) order."""
        index = {}
        for layer, lh in self.layers.items():
            for pos, head in enumerate(lh.heads):
                index[(layer, head)] = (layer, pos)
        rows = [per_layer[layer][pos] for layer, pos in (index[h] for h in self.order)]
        return torch.stack(rows)


_ACTIVE: contextvars.ContextVar[AttentionPass | None] = contextvars.ContextVar("qrhead_pass", default=None)


class AttentionPass:
    """One forward of one model with the attention wrapper active (use as a context manager).

    ``rows`` maps group names to slices of this forward's tokens (the query rows); for each group the
    pass records the selected heads' attention averaged over its rows in ``masses[group][layer]``
    (``[heads_of_layer, keys]``, float32, keys = every cached and new position). ``rows=None`` records
    nothing (e.g. encoding a prefix). The model's lock is held while the pass is active, so passes on one
    model run one at a time.
    """

    def __init__(self, model: torch.nn.Module, plan: CapturePlan, rows: Mapping[str, slice] | None = None):
        self.model = model
        self.plan = plan
        self.rows = dict(rows) if rows else None
        self.masses: dict[str, dict[int, torch.Tensor]] = {g: {} for g in (self.rows or {})}
        self.reached_stop = False
        self._saved: Any = None
        self._token: contextvars.Token | None = None
        self._lock = model_lock(model)

    def reset(self) -> None:
        """Forget what earlier forwards of this pass recorded (for passes reused over decoding steps)."""
        self.masses = {g: {} for g in (self.rows or {})}

    # --- hooks ---------------------------------------------------------------------------------
    def on_attention(self, module: torch.nn.Module, layer: int, query: torch.Tensor, key: torch.Tensor,
                     attention_mask: Any, kwargs: dict[str, Any]) -> None:
        """Called at each attention call of a plan module, before the output is computed."""
        selected = self.plan.layers.get(layer)
        if selected is not None and self.rows is not None:
            out = head_attention(module, query, key, attention_mask, self.rows, selected, kwargs)
            for group, value in out.items():
                self.masses[group][layer] = value

    def on_output(self, layer: int, output: torch.Tensor) -> torch.Tensor:
        """Called with a layer's attention output ``[batch, tokens, heads, head_dim]``; may change it."""
        return output

    # --- running -------------------------------------------------------------------------------
    def __enter__(self) -> AttentionPass:
        self._lock.acquire()
        try:
            self._saved = attn_implementation(self.model)
            self.model.set_attn_implementation(_wrapped(self._saved))
            self._token = _ACTIVE.set(self)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._saved is not None:
            self.model.set_attn_implementation(self._saved)
            self._saved = None
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
        self._lock.release()

    def run(self, **inputs: Any) -> Any:
        """Run the model on ``inputs`` until the plan's stop layer (or to the end if it has none)."""
        self.reached_stop = False
        try:
            out = self.model(**inputs)
        except StopForward:
            _offload_interrupted(self.model)
            return None
        if self.plan.stop_layer is not None and not self.reached_stop:
            raise QRHeadRuntimeError(
                f"the forward never reached layer {self.plan.stop_layer}: the model's attention modules "
                "did not call the attention interface")
        return out


def _base_function(name: str, module: torch.nn.Module):
    if name == "eager":
        # Each modeling file defines its own eager attention (some add soft-capping or sinks).
        fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        return fn if fn is not None else ALL_ATTENTION_FUNCTIONS["sdpa"]
    return ALL_ATTENTION_FUNCTIONS[name]


def _make_wrapper(base: str):
    def qrhead_attention(module, query, key, value, attention_mask, **kwargs):
        active = _ACTIVE.get()
        if active is None or id(module) not in active.plan.module_ids:
            return _base_function(base, module)(module, query, key, value, attention_mask, **kwargs)
        layer = module.layer_idx
        active.on_attention(module, layer, query, key, attention_mask, kwargs)
        stop = active.plan.stop_layer
        if stop is not None and layer >= stop:
            active.reached_stop = True
            raise StopForward
        output, weights = _base_function(base, module)(module, query, key, value, attention_mask, **kwargs)
        return active.on_output(layer, output), weights

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
        raise QRHeadValueError(f"attention implementation {base!r} is not registered in transformers "
                               f"(known: eager, {', '.join(ALL_ATTENTION_FUNCTIONS.valid_keys())})")
    name = f"{WRAPPER_PREFIX}{base}"
    with _REGISTER_LOCK:
        if name not in ALL_ATTENTION_FUNCTIONS:
            AttentionInterface.register(name, _make_wrapper(base))
            if base in ALL_MASK_ATTENTION_FUNCTIONS:
                mask = ALL_MASK_ATTENTION_FUNCTIONS[base]
            elif "flash" in base:
                mask = ALL_MASK_ATTENTION_FUNCTIONS["flash_attention_2"]
            else:
                mask = ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
            AttentionMaskInterface.register(name, mask)
    return name


def head_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: Any,
    rows: Mapping[str, slice],
    selected: LayerHeads,
    kwargs: dict[str, Any],
) -> dict[str, torch.Tensor]:
    """Post-softmax attention of the selected heads, averaged over each group's rows: ``[heads, keys]``.

    ``query`` is ``[1, H, Q, D]`` (after RoPE), ``key`` is ``[1, KV, K, D]`` with the cached keys
    included; the last ``Q`` keys belong to this forward's tokens. The softmax is computed once for the
    union of the groups' rows.
    """
    if query.shape[0] != 1:
        raise QRHeadValueError("attention capture supports batch size 1")
    q_len, n_keys = query.shape[2], key.shape[2]
    bounds = {g: range(q_len)[s] for g, s in rows.items()}
    lo = min(r.start for r in bounds.values())
    hi = max(r.stop for r in bounds.values())
    span = slice(lo, hi)
    q = query[0, :, span]  # [H, R, D]
    n_rows = q.shape[1]
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = getattr(module, "scaling", query.shape[-1] ** -0.5)
    softcap = kwargs.get("softcap")
    sinks = kwargs.get("s_aux")
    keep, additive = _row_mask(module, attention_mask, span, q_len, n_keys, n_rows, query.device)
    out = {g: torch.empty((len(selected.heads), n_keys), dtype=torch.float32, device=query.device) for g in rows}
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
        for group, r in bounds.items():
            out[group][out_pos.to(query.device)] = probs[:, r.start - lo: r.stop - lo].mean(dim=1)
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


# --- the model's attention modules and lock --------------------------------------------------------


def _wrapped(impl: Any) -> Any:
    """The wrapper's name for a model's attention implementation (per sub-model for composite models)."""
    if isinstance(impl, dict):
        return {key: wrapper_name(value) for key, value in impl.items()}
    return wrapper_name(impl)


def attention_module_ids(model: torch.nn.Module) -> frozenset[int]:
    """Modules that call the attention interface (they carry an integer ``layer_idx``)."""
    ids = frozenset(
        id(m)
        for m in model.modules()
        if isinstance(getattr(m, "layer_idx", None), int)
        and any(hasattr(m, p) for p in ("q_proj", "qkv_proj", "query_key_value", "c_attn", "Wqkv", "query"))
    )
    if not ids:
        raise QRHeadValueError(
            f"{type(model).__name__}: no attention modules with a layer index found; "
            "this architecture does not use transformers' attention interface"
        )
    return ids


_MODEL_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """One re-entrant lock per model object: passes (and cache runs) on one model run one at a time."""
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


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
