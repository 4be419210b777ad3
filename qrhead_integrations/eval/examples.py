"""Labelled examples for head detection: from a BEIR folder (+ BM25 or a run file) or plain JSONL."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..engine.detection import DetectionExample, examples_from_rankings
from .data import BeirDataset, DataError, read_jsonl


def jsonl_examples(path: str | Path) -> list[DetectionExample]:
    """One ``{"query", "passages": [...], "gold": [indices]}`` object per line."""
    out = []
    for n, row in enumerate(read_jsonl(path), start=1):
        try:
            out.append(DetectionExample(row["query"], tuple(row["passages"]), frozenset(row["gold"]),
                                        str(row.get("id", n))))
        except KeyError as exc:
            raise DataError(f"{path}:{n}: missing field {exc.args[0]!r} (need query, passages, gold)") from None
    return out


def beir_candidates(ds: BeirDataset, qids: list[str], depth: int, run: str | None = None
                    ) -> dict[str, list[tuple[str, float]]]:
    """First-stage candidates: a run file of the data set, or BM25 top-``depth``."""
    if run:
        full = ds.run(run)
        return {q: full[q][:depth] for q in qids if q in full}
    from .first_stage import bm25_from_corpus

    bm25 = bm25_from_corpus(ds.corpus)
    hits = bm25.search([ds.queries[q] for q in qids], depth)
    return dict(zip(qids, hits))


def bm25_rescore(ds: BeirDataset, cands: dict[str, list[tuple[str, float]]]
                 ) -> dict[str, list[tuple[str, float]]]:
    """The same candidates in the same order, scored by BM25 over the whole corpus (0 where no term matches).

    For runs without meaningful scores (e.g. HotpotQA's given paragraphs): the ``bm25`` baseline and the
    fusion methods then use real BM25 scores while the candidate order handed to the model is unchanged.
    """
    from .first_stage import bm25_from_corpus

    bm25 = bm25_from_corpus(ds.corpus)
    qids = list(cands)
    hits = bm25.search([ds.queries[q] for q in qids], len(bm25.ids))
    out = {}
    for q, h in zip(qids, hits):
        score = dict(h)
        out[q] = [(d, float(score.get(d, 0.0))) for d, _ in cands[q]]
    return out


def beir_examples(
    root: str | Path,
    split: str = "train",
    depth: int = 20,
    run: str | None = None,
    limit: int | None = None,
    skip: int = 0,
    seed: int = 0,
) -> tuple[list[DetectionExample], str]:
    """Examples whose gold passage is among the first-stage candidates; seeded choice of queries.

    Returns the examples and a one-line description of the data for the head set's provenance.
    """
    ds = BeirDataset.load(root)
    qrels = ds.split(split)
    qids = [q for q in qrels if q in ds.queries]
    cands = beir_candidates(ds, qids, depth, run)
    ranked = {q: [d for d, _ in hits] for q, hits in cands.items()}
    examples = examples_from_rankings(ds.queries, ranked, qrels, ds.corpus)
    random.Random(seed).shuffle(examples)
    chosen = examples[skip: None if limit is None else skip + limit]
    first = f"run {run}" if run else f"BM25 top-{depth}"
    desc = (f"{ds.name} qrels/{split}.tsv, {first}, {len(chosen)} of {len(examples)} queries with a "
            f"gold passage in the candidates (seed {seed}, skip {skip})")
    return chosen, desc


def load_examples(data: str | Path, **kwargs: Any) -> tuple[list[DetectionExample], str]:
    """A BEIR folder or a ``.jsonl`` file of examples."""
    path = Path(data)
    if path.is_file():
        examples = jsonl_examples(path)
        limit, skip = kwargs.get("limit"), kwargs.get("skip", 0)
        chosen = examples[skip: None if limit is None else skip + limit]
        return chosen, f"{path.name}, {len(chosen)} examples"
    if path.is_dir():
        if (path / "nq-open-oracle.jsonl").is_file():
            from .nq import nq_examples

            return nq_examples(path, **kwargs)
        return beir_examples(path, **kwargs)
    raise DataError(f"detection data not found: {data}")
