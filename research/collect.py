"""Per-token attention masses of every head, for whole evaluation sets: computed once, stored per query.

One forward per (query, candidate order) reads every head of every layer for both row sets (the query's
own tokens and the whole suffix after the passages) and for the real and the null query. What is stored
(one ``.npz`` per query, written as soon as it is computed, so an interrupted run resumes where it
stopped) is enough to evaluate any head set, head weighting, row set, token filter, calibration and
fusion offline, without running the model again (:mod:`research.study`):

- ``sums``: ``[2 row sets, 2 (real, null), heads, N]`` float32 per-passage masses (first-stage order),
- ``tokens``: ``[2 row sets, heads, T]`` float16 calibrated per-token masses of the passages' tokens,
  with ``token_passage`` (``[T]``: the passage, first-stage index, of each token),
- ``truncated``: which passages the scorer cut (``max_passage_tokens``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qrhead_integrations.engine.heads import HeadSet, config_fingerprint
from qrhead_integrations.engine.scoring import EncodedPassages, QRHeadScorer
from qrhead_integrations.eval.chunks import squad_chunk_items
from qrhead_integrations.eval.masses import Candidates, shuffle_permutation

GROUPS = ("query", "suffix")


@dataclass
class StoredMasses:
    """What :func:`collect` stores for one query (see the module docstring)."""

    sums: np.ndarray  # [2 groups, 2 (real, null), H, N]
    tokens: np.ndarray  # [2 groups, H, T] calibrated, float16
    token_passage: np.ndarray  # [T]
    truncated: np.ndarray  # [N] bool
    seconds: float = 0.0

    def calibrated(self, group: str = "query") -> np.ndarray:
        g = GROUPS.index(group)
        return self.sums[g, 0] - self.sums[g, 1]

    def real(self, group: str = "query") -> np.ndarray:
        return self.sums[GROUPS.index(group), 0]


class MassStore:
    """A folder of :class:`StoredMasses`, one file per query, for one (model, data, setting)."""

    def __init__(self, root: str | Path, scorer: QRHeadScorer, setting: dict[str, Any]) -> None:
        key = {
            "model": scorer.model_name,
            "fingerprint": config_fingerprint(scorer.model.config),
            "dtype": str(scorer.model.dtype),
            "template": scorer.prompt_template.version,
            "null": scorer.options.null_query,
            "max_passage_tokens": scorer.options.max_passage_tokens,
            "max_context_tokens": scorer.options.max_context_tokens,
            "format": "qrhead-token-masses/1",
            **setting,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / scorer.model_name.replace("/", "__") / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "setting.json").write_text(json.dumps(key, indent=1, sort_keys=True))

    def path(self, qid: str, doc_ids: Sequence[str]) -> Path:
        h = hashlib.sha256("\x00".join(doc_ids).encode()).hexdigest()[:12]
        return self.dir / f"{hashlib.sha256(qid.encode()).hexdigest()[:16]}-{h}.npz"

    def get(self, qid: str, doc_ids: Sequence[str]) -> StoredMasses | None:
        p = self.path(qid, doc_ids)
        if not p.is_file():
            return None
        with np.load(p) as z:
            return StoredMasses(z["sums"], z["tokens"], z["token_passage"], z["truncated"], float(z["seconds"]))

    def put(self, qid: str, doc_ids: Sequence[str], m: StoredMasses) -> None:
        p = self.path(qid, doc_ids)
        tmp = p.with_name(p.stem + ".tmp.npz")
        np.savez_compressed(tmp, sums=m.sums.astype(np.float32), tokens=m.tokens.astype(np.float16),
                            token_passage=m.token_passage.astype(np.int32), truncated=m.truncated,
                            seconds=np.float64(m.seconds))
        tmp.replace(p)


def measure(enc: EncodedPassages, query: str, perm: Sequence[int]) -> StoredMasses:
    """Every head's masses for ``query`` on encoded passages given in ``perm`` order (first-stage index
    ``perm[j]`` at input position ``j``), returned in first-stage order."""
    t = time.time()
    n = len(enc)
    h = len(enc.heads)
    sums = np.zeros((len(GROUPS), 2, h, n))
    tok_parts: list[np.ndarray] = []
    owner_parts: list[np.ndarray] = []
    scale = enc.layout.scale
    placements = len(enc.layout.placements)
    for wp, masses in enc.token_masses(query, GROUPS):
        spans = wp.null_prompt.passage_spans
        for pos, (a, b) in enumerate(spans):
            j = wp.indices[pos]  # input position
            first = perm[j]
            f = scale[j] / placements
            cal = []
            for g, group in enumerate(GROUPS):
                real, null = masses[group]
                sums[g, 0, :, first] += real[:, a:b].sum(axis=1) * f
                sums[g, 1, :, first] += null[:, a:b].sum(axis=1) * f
                cal.append((real[:, a:b] - null[:, a:b]) * f)
            if wp.placement == enc.layout.placements[0]:
                tok_parts.append(np.stack(cal))
                owner_parts.append(np.full(b - a, first, dtype=np.int32))
    tokens = np.concatenate(tok_parts, axis=2) if tok_parts else np.zeros((len(GROUPS), h, 0))
    owner = np.concatenate(owner_parts) if owner_parts else np.zeros(0, dtype=np.int32)
    order = np.argsort(owner, kind="stable")  # tokens grouped by first-stage passage
    truncated = np.zeros(n, dtype=bool)
    for j, t_ in enumerate(enc.layout.truncated):
        truncated[perm[j]] = t_
    return StoredMasses(sums, tokens[:, :, order], owner[order], truncated, time.time() - t)


def collect(scorer: QRHeadScorer, items: Sequence[Candidates], *, order: str, seed: int, store: MassStore,
            desc: str = "collect", show_progress: bool = True) -> dict[str, StoredMasses]:
    """Every item's :class:`StoredMasses` in ``order`` (``first_stage`` or ``shuffled``), computing only
    what ``store`` does not hold yet (and storing each as soon as it is done)."""
    from tqdm.auto import tqdm

    all_heads = HeadSet.all_heads(scorer.shape)
    out: dict[str, StoredMasses] = {}
    for item in tqdm(items, desc=desc, disable=not show_progress):
        hit = store.get(item.qid, item.doc_ids)
        if hit is None:
            t = time.time()
            perm = shuffle_permutation(item.qid, len(item.doc_ids), seed) if order == "shuffled" \
                else list(range(len(item.doc_ids)))
            enc = scorer.encode([item.passages[i] for i in perm], all_heads, queries=[item.query], keep_cache=False)
            hit = measure(enc, item.query, perm)
            hit.seconds = time.time() - t
            store.put(item.qid, item.doc_ids, hit)
            hit = store.get(item.qid, item.doc_ids)  # exactly what a later run reads (float32 / float16)
        out[item.qid] = hit
    return out


def collect_document(scorer: QRHeadScorer, chunks: Sequence[Any], questions: Sequence[tuple[str, str]],
                     doc_ids: Sequence[str], store: MassStore) -> dict[str, StoredMasses]:
    """Chunks of one document in document order, encoded once; every question's masses (cached)."""
    out: dict[str, StoredMasses] = {}
    enc = None
    for qid, question in questions:
        hit = store.get(qid, doc_ids)
        if hit is None:
            t = time.time()
            if enc is None:
                enc = scorer.encode(list(chunks), heads="all")
            hit = measure(enc, question, list(range(len(chunks))))
            hit.seconds = time.time() - t
            store.put(qid, doc_ids, hit)
            hit = store.get(qid, doc_ids)
        out[qid] = hit
    return out


def collect_chunks(scorer: QRHeadScorer, root: str | Path, *, chunk_tokens: int = 256, n_questions: int | None = None,
                   seed: int = 0, cache_root: str | Path, show_progress: bool = True) -> int:
    """Store every head's per-token masses for SQuAD questions over their article's chunks (document order;
    each article encoded once for all its questions). Returns the number of questions stored."""
    from tqdm.auto import tqdm

    articles = squad_chunk_items(scorer, root, chunk_tokens=chunk_tokens, n_questions=n_questions, seed=seed)
    store = MassStore(Path(cache_root) / "tokens", scorer, {"set": "squad", "chunk_tokens": chunk_tokens,
                                                            "order": "document"})
    total = sum(len(a["questions"]) for a in articles)
    done = 0
    with tqdm(total=total, desc="squad chunks", disable=not show_progress) as bar:
        for art in articles:
            got = collect_document(scorer, art["chunks"], [(q["id"], q["question"]) for q in art["questions"]],
                                   art["ids"], store)
            done += len(got)
            bar.update(len(got))
    return done
