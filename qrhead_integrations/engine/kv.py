"""Encode a prompt prefix once into a KV cache, then run any number of suffixes on top of it.

The passages' prefix of a QRHead prompt does not depend on the query, so it is encoded once (up to the
deepest layer that holds a selected head) and every query suffix, the real query and the null query
alike, runs on top of it. A suffix pass must not change the cache: :meth:`PrefixCache.run` snapshots
it, lets each layer drop its suffix keys right after its update (so at most one layer holds a second
copy of the passages' keys at a time), and restores it afterwards, also when the pass fails.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from .capture import AttentionPass, CapturePlan, model_lock


@functools.lru_cache(maxsize=64)
def _forward_takes_cache(forward_class: type) -> bool:
    try:
        return "cache" in inspect.signature(forward_class.forward).parameters
    except (TypeError, ValueError):
        return False


def cache_kwargs(model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """The forward keyword for a KV cache: ``cache`` in current transformers (``past_key_values`` is
    deprecated there), ``past_key_values`` in releases before the rename."""
    name = "cache" if _forward_takes_cache(type(model)) else "past_key_values"
    return {name: cache, "use_cache": True}


def new_cache(model: torch.nn.Module) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


class PrefixCache:
    """The KV cache of one prompt prefix; :meth:`run` runs a suffix on top of it and leaves it unchanged."""

    def __init__(self, model: torch.nn.Module, plan: CapturePlan, prefix_ids: Sequence[int],
                 device: torch.device) -> None:
        self.model = model
        self.plan = plan
        self.device = device
        self.length = len(prefix_ids)
        self.cache = new_cache(model)
        ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
        with torch.inference_mode(), AttentionPass(model, plan) as p:
            p.run(input_ids=ids, **cache_kwargs(model, self.cache))

    def run(self, suffix_ids: Sequence[int], rows: Mapping[str, slice] | None,
            pass_type: type[AttentionPass] = AttentionPass, **pass_kwargs: Any) -> AttentionPass:
        """Run ``suffix_ids`` after the prefix with a fresh pass of ``pass_type``; returns the finished pass."""
        ids = torch.tensor([list(suffix_ids)], dtype=torch.long, device=self.device)
        with torch.inference_mode(), model_lock(self.model), self._extended():
            with pass_type(self.model, self.plan, rows, **pass_kwargs) as p:
                p.run(input_ids=ids, **cache_kwargs(self.model, self.cache))
        return p

    @contextlib.contextmanager
    def _extended(self) -> Iterator[None]:
        saved = _snapshot(self.cache)
        try:
            _keep_prefix_only(saved)
            yield
        finally:
            _restore(self.cache, saved)


def _snapshot(cache: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """References to the cache's state; layer updates concatenate into new tensors, never in place."""
    layers = list(cache.layers)
    return layers, [dict(layer.__dict__) for layer in layers]


def _keep_prefix_only(saved: tuple[list[Any], list[dict[str, Any]]]) -> None:
    """During a suffix pass, let each cache layer go back to its prefix state right after its update.

    A cache layer's ``update`` concatenates the cached and the new keys/values and keeps the result;
    over a whole pass that holds a second copy of the passages' cache (every layer up to the stop
    layer) until :func:`_restore`. Here each layer still hands the concatenation to its attention, but
    its stored state is reset at once, so at most one layer's concatenation is alive at a time. The
    override is an instance attribute that the reset itself removes (and :func:`_restore` for layers
    the pass never reaches).
    """
    layers, states = saved
    for layer, state in zip(layers, states):
        original = layer.update

        def update(*args: Any, _layer: Any = layer, _state: dict[str, Any] = state, _original: Any = original,
                   **kwargs: Any) -> Any:
            out = _original(*args, **kwargs)
            _layer.__dict__.clear()
            _layer.__dict__.update(_state)
            return out

        layer.update = update


def _restore(cache: Any, saved: tuple[list[Any], list[dict[str, Any]]]) -> None:
    layers, states = saved
    cache.layers[:] = layers
    for layer, state in zip(layers, states):
        layer.__dict__.clear()
        layer.__dict__.update(state)
