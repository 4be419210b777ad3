"""Per-head attention masses for many queries, computed once and cached on disk.

One forward per (query, candidate order) captures every head of every layer; any head set (QRHead,
all heads, random heads, retrieval heads) and any fusion variant is then evaluated from the cache
without running the model again.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.aggregate import HeadMasses
from ..engine.detection import config_fingerprint
from ..engine.heads import HeadSet
from ..engine.prompt import TEMPLATE_VERSION
from ..engine.scoring import QRHeadScorer

ORDERS = ("first_stage", "shuffled")
PLACEMENTS = ("reversed", "as_given")


@dataclass
class Candidates:
    """A query and its first-stage candidates, best first."""

    qid: str
    query: str
    doc_ids: list[str]
    passages: list[Any]
    first_stage: list[float]


def all_head_masses(heads: HeadSet, real: np.ndarray, null: np.ndarray, truncated: list[bool]) -> HeadMasses:
    """Every head's masses of one query (rows: layer-major, the order of ``HeadSet.all_heads``)."""
    return HeadMasses(heads, np.asarray(real, dtype=np.float64), np.asarray(null, dtype=np.float64),
                      np.ones(real.shape[1]), list(truncated))


def shuffle_permutation(qid: str, n: int, seed: int) -> list[int]:
    """A seeded permutation per query (stable across runs and machines)."""
    digest = hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()
    perm = list(range(n))
    random.Random(int(digest[:16], 16)).shuffle(perm)
    return perm


class MassCache:
    """Cache folder for one (model, data, setting); one ``.npz`` per query."""

    def __init__(self, root: Path, scorer: QRHeadScorer, setting: dict[str, Any]) -> None:
        key = {
            "model": scorer.model_name,
            "fingerprint": config_fingerprint(scorer.model.config),
            "dtype": str(scorer.model.dtype),
            "template": TEMPLATE_VERSION,
            "null": scorer.options.null_query,
            "max_passage_tokens": scorer.options.max_passage_tokens,
            **setting,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = scorer.model_name.replace("/", "__")
        self.heads = HeadSet.all_heads(scorer.shape)
        self.dir = Path(root) / safe / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "setting.json").write_text(json.dumps(key, indent=1, sort_keys=True))

    def _path(self, qid: str, doc_ids: list[str]) -> Path:
        h = hashlib.sha256("\x00".join(doc_ids).encode()).hexdigest()[:12]
        return self.dir / f"{hashlib.sha256(qid.encode()).hexdigest()[:16]}-{h}.npz"

    def get(self, qid: str, doc_ids: list[str]) -> HeadMasses | None:
        p = self._path(qid, doc_ids)
        if not p.is_file():
            return None
        with np.load(p) as z:
            return all_head_masses(self.heads, z["real"], z["null"], [bool(t) for t in z["truncated"]])

    def put(self, qid: str, doc_ids: list[str], m: HeadMasses) -> None:
        p = self._path(qid, doc_ids)
        tmp = p.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, real=m.real.astype(np.float32), null=m.null.astype(np.float32),
                            truncated=np.asarray(m.truncated))
        tmp.replace(p)


def prompt_distance(qid: str, n: int, order: str, placement: str, seed: int) -> np.ndarray:
    """For each candidate (first-stage index), how many passages sit between it and the query."""
    perm = shuffle_permutation(qid, n, seed) if order == "shuffled" else list(range(n))
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)  # position in the input list handed to the scorer
    return pos if placement == "reversed" else (n - 1 - pos)


def collect_masses(
    scorer: QRHeadScorer,
    items: list[Candidates],
    order: str = "first_stage",
    placement: str = "reversed",
    seed: int = 0,
    cache_root: str | Path | None = None,
    setting: dict[str, Any] | None = None,
    show_progress: bool = True,
    desc: str = "scoring",
) -> dict[str, HeadMasses]:
    """All-head masses of every query's candidates, in ``order``; cached under ``cache_root``.

    ``order`` is the order of the list handed to the scorer: ``first_stage`` (best first) or
    ``shuffled`` (a seeded permutation per query); ``placement`` is the scorer's candidate order:
    ``reversed`` puts the list's first item next to the query (the reference setup), ``as_given`` puts
    it first. HeadMasses are returned in first-stage order.
    """
    from tqdm.auto import tqdm

    from ..engine import parallel

    if order not in ORDERS or placement not in PLACEMENTS:
        raise ValueError(f"order must be one of {ORDERS}, placement one of {PLACEMENTS}")
    all_heads = HeadSet.all_heads(scorer.shape)
    # Under torchrun / accelerate launch the queries are sharded over the processes and gathered
    # (every process returns the full result); only rank 0 reads and writes the cache.
    main = parallel.is_main_process()
    cache = MassCache(Path(cache_root), scorer, {"order": order, "placement": placement, "seed": seed,
                                                 **(setting or {})}) if cache_root and main else None
    hits: dict[int, HeadMasses] = {}
    if cache:
        for n, item in enumerate(items):
            hit = cache.get(item.qid, item.doc_ids)
            if hit is not None:
                hits[n] = hit
    hits = parallel.broadcast(hits)
    todo = [n for n in range(len(items)) if n not in hits]

    def one(_: int, n: int) -> HeadMasses:
        item = items[n]
        perm = list(range(len(item.passages)))
        if order == "shuffled":
            perm = shuffle_permutation(item.qid, len(perm), seed)
        hs = placed.head_masses(item.query, [item.passages[i] for i in perm], heads=all_heads)
        inv = np.argsort(perm)
        scale = hs.scale[None, :]  # window factor (1.0 when the candidates fit one prompt)
        return all_head_masses(all_heads, (hs.real * scale)[:, inv], (hs.null * scale)[:, inv],
                               [hs.truncated[j] for j in inv])

    written: set[int] = set()

    def put(j: int, m: HeadMasses) -> None:  # rank 0 caches its own results as they arrive
        if cache:
            cache.put(items[todo[j]].qid, items[todo[j]].doc_ids, m)
            written.add(j)

    label = desc + (f" (rank 0 of {parallel.world_size()})" if parallel.is_distributed() else "")
    bar = lambda idx: tqdm(idx, desc=label, disable=not show_progress or not main)  # noqa: E731
    placed = scorer.with_options(candidate_order=placement, calibrate=True)
    computed = parallel.map_sharded(one, todo, on_result=put, progress=bar)
    if cache:
        for j, m in enumerate(computed):  # the other processes' results
            if j not in written:
                cache.put(items[todo[j]].qid, items[todo[j]].doc_ids, m)
    by_item = dict(hits)
    by_item.update(zip(todo, computed))
    out: dict[str, HeadMasses] = {}
    for n, item in enumerate(items):
        out[item.qid] = by_item[n]
    return out
