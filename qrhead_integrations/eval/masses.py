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

from ..engine.detection import config_fingerprint
from ..engine.heads import HeadSet
from ..engine.prompt import TEMPLATE_VERSION
from ..engine.scoring import QRHeadScorer

ORDERS = ("first_stage", "shuffled")


@dataclass
class Candidates:
    """A query and its first-stage candidates, best first."""

    qid: str
    query: str
    doc_ids: list[str]
    passages: list[Any]
    first_stage: list[float]


@dataclass
class Masses:
    """Attention mass of every head (rows: layer-major) on each candidate (first-stage order)."""

    real: np.ndarray  # [layers*heads, k]
    null: np.ndarray  # [layers*heads, k]
    doc_ids: list[str]
    truncated: list[bool]

    def per_head(self, calibrate: bool = True) -> np.ndarray:
        return self.real - self.null if calibrate else self.real

    def scores(self, head_set: HeadSet, num_heads: int, calibrate: bool = True) -> np.ndarray:
        rows = [l * num_heads + h for l, h in head_set.heads]
        return self.per_head(calibrate)[rows].mean(axis=0)


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
            "null": scorer.null_query,
            "max_passage_tokens": scorer.max_passage_tokens,
            **setting,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = scorer.model_name.replace("/", "__")
        self.dir = Path(root) / safe / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "setting.json").write_text(json.dumps(key, indent=1, sort_keys=True))

    def _path(self, qid: str, doc_ids: list[str]) -> Path:
        h = hashlib.sha256("\x00".join(doc_ids).encode()).hexdigest()[:12]
        return self.dir / f"{hashlib.sha256(qid.encode()).hexdigest()[:16]}-{h}.npz"

    def get(self, qid: str, doc_ids: list[str]) -> Masses | None:
        p = self._path(qid, doc_ids)
        if not p.is_file():
            return None
        with np.load(p) as z:
            return Masses(z["real"], z["null"], list(doc_ids), [bool(t) for t in z["truncated"]])

    def put(self, qid: str, m: Masses) -> None:
        p = self._path(qid, m.doc_ids)
        tmp = p.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, real=m.real.astype(np.float32), null=m.null.astype(np.float32),
                            truncated=np.asarray(m.truncated))
        tmp.replace(p)


def collect_masses(
    scorer: QRHeadScorer,
    items: list[Candidates],
    order: str = "first_stage",
    seed: int = 0,
    cache_root: str | Path | None = None,
    setting: dict[str, Any] | None = None,
    show_progress: bool = True,
    desc: str = "scoring",
) -> dict[str, Masses]:
    """All-head masses of every query's candidates, in ``order``; cached under ``cache_root``.

    ``first_stage``: the first-stage order, rank 1 next to the query (the reference setup).
    ``shuffled``: a seeded random permutation per query. Masses are returned in first-stage order.
    """
    from tqdm.auto import tqdm

    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}")
    all_heads = HeadSet.all_heads(scorer.shape)
    cache = MassCache(Path(cache_root), scorer, {"order": order, "seed": seed, **(setting or {})}) \
        if cache_root else None
    saved_order = scorer.candidate_order
    scorer.candidate_order = "reversed" if order == "first_stage" else "as_given"
    out: dict[str, Masses] = {}
    try:
        for item in tqdm(items, desc=desc, disable=not show_progress):
            hit = cache.get(item.qid, item.doc_ids) if cache else None
            if hit is not None:
                out[item.qid] = hit
                continue
            perm = list(range(len(item.passages)))
            if order == "shuffled":
                perm = shuffle_permutation(item.qid, len(perm), seed)
            hs = scorer.head_scores(item.query, [item.passages[i] for i in perm], heads=all_heads,
                                    calibrate=True)
            inv = np.argsort(perm)
            scale = hs.scale[None, :]  # window factor (1.0 when the candidates fit one prompt)
            m = Masses((hs.real * scale)[:, inv], (hs.null * scale)[:, inv], list(item.doc_ids),
                       [hs.truncated[j] for j in inv])
            if cache:
                cache.put(item.qid, m)
            out[item.qid] = m
    finally:
        scorer.candidate_order = saved_order
    return out
