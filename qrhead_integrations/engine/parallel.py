"""Data parallelism over many queries with ``torch.distributed`` (``torchrun`` or ``accelerate launch``).

Each process holds its own copy of the model (one GPU each, or a CPU share) and scores a
deterministic shard of the work items; the results are gathered with ``all_gather_object`` so every
process ends with the full, input-ordered list, identical to what one process computes alone. Only
rank 0 should write files (:func:`is_main_process`).

Nothing here does anything in a single process: without ``WORLD_SIZE > 1`` in the environment (or an
initialised process group) every helper is a plain local computation and ``torch.distributed`` is
never touched::

    torchrun --nproc_per_node 2 -m qrhead_integrations.cli detect --data ... --out heads.json
    accelerate launch --num_processes 2 -m qrhead_integrations.cli detect --data ... --out heads.json

The process group is created on first use (``gloo``: results are small Python objects, and gloo works
on CPU-only machines); if the caller already created one (e.g. ``accelerate.Accelerator()`` with
NCCL), a gloo group over the same processes is added for the object collectives.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_LOCK = threading.Lock()
_GROUP: Any = None  # the gloo group used for object collectives (None: the default group)
_OWNS_DEFAULT_GROUP = False


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def world_size() -> int:
    """Number of processes: the initialised process group's, else ``WORLD_SIZE`` (default 1)."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's rank: the initialised process group's, else ``RANK`` (default 0)."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, default 0)."""
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """True in a single process and on rank 0: the process that writes files and prints results."""
    return rank() == 0


def local_device() -> str | None:
    """``cuda:<local rank>`` when several processes share a multi-GPU machine, else ``None`` (default)."""
    if not is_distributed():
        return None
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{local_rank() % torch.cuda.device_count()}"
    return None


def init() -> bool:
    """Join the process group (created from the ``torchrun`` environment if needed); False if single."""
    global _GROUP, _OWNS_DEFAULT_GROUP
    if not is_distributed():
        return False
    dist = _dist()
    if dist is None:
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    with _LOCK:
        if not dist.is_initialized():
            missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE") if v not in os.environ]
            if missing:
                raise RuntimeError(
                    f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {', '.join(missing)} not set: launch with "
                    "torchrun or accelerate launch"
                )
            dist.init_process_group(backend="gloo")
            _OWNS_DEFAULT_GROUP = True
            atexit.register(_shutdown)
        if _GROUP is None and dist.get_backend() != "gloo":
            _GROUP = dist.new_group(backend="gloo")
    return True


def _shutdown() -> None:
    dist = _dist()
    if _OWNS_DEFAULT_GROUP and dist is not None and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


def shard_indices(n: int) -> list[int]:
    """The item indices this process handles: ``rank, rank + world, ...`` (deterministic, balanced)."""
    return list(range(rank(), n, world_size()))


def all_gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not init():
        return [obj]
    dist = _dist()
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_GROUP)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (``obj`` itself in a single process)."""
    if not init():
        return obj
    dist = _dist()
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_GROUP)
    return box[0]


def barrier() -> None:
    if init():
        _dist().barrier(group=_GROUP)


def map_sharded(
    fn: Callable[[int, T], R],
    items: Sequence[T],
    *,
    on_result: Callable[[int, R], None] | None = None,
    progress: Callable[[Sequence[int]], Any] | None = None,
) -> list[R]:
    """``[fn(i, items[i]) for i in range(len(items))]``, the work split over all processes.

    Each process runs ``fn`` on its shard (:func:`shard_indices`), calling ``on_result(i, value)`` as
    each of its own results arrives (e.g. to write a cache on rank 0); then all results are gathered,
    so every process returns the full list in input order. ``progress`` wraps the iteration over this
    process's indices (e.g. a tqdm bar shown on rank 0 only). If any process fails, every process
    raises (no process is left waiting in a collective).
    """
    mine = shard_indices(len(items))
    local: dict[int, R] = {}
    error: str | None = None
    try:
        for i in progress(mine) if progress is not None else mine:
            local[i] = value = fn(i, items[i])
            if on_result is not None:
                on_result(i, value)
    except Exception as exc:
        if not is_distributed():
            raise
        error = f"rank {rank()}: {type(exc).__name__}: {exc}"
    if not is_distributed():
        return [local[i] for i in range(len(items))]
    parts = all_gather((local, error))
    errors = [e for _, e in parts if e]
    if errors:
        raise RuntimeError("data-parallel work failed: " + "; ".join(errors))
    merged: dict[int, R] = {}
    for part, _ in parts:
        merged.update(part)
    missing = [i for i in range(len(items)) if i not in merged]
    if missing:  # pragma: no cover - would mean ranks disagreed on the item list
        raise RuntimeError(f"data-parallel work lost items {missing[:5]}: do all processes see the same inputs?")
    return [merged[i] for i in range(len(items))]
