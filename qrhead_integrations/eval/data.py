"""Readers for the evaluation layouts: BEIR (corpus/queries/qrels/runs), long-context sets, JSONL.

Data sets are never copied into the repository; point these readers at a folder such as
``../shared/data/scifact``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data folder or file does not have the expected layout."""


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: invalid JSON ({exc.msg})") from None


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        for n, row in enumerate(reader, start=1):
            if not row or (n == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise DataError(f"{path}:{n}: expected 'query-id corpus-id score'")
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels


def read_trec_run(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, float]]]:
    """``qid Q0 docid rank score tag`` lines -> per query, (docid, score) best first."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 5:
                raise DataError(f"{path}:{n}: expected 'qid Q0 docid rank score [tag]'")
            rows.setdefault(parts[0], []).append((int(parts[3]), parts[2], float(parts[4])))
    return {q: [(d, s) for _, d, s in sorted(r, key=lambda x: (x[0], -x[2]))] for q, r in rows.items()}


def write_trec_run(path: str | os.PathLike[str], run: dict[str, list[tuple[str, float]]], tag: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for qid, ranked in run.items():
            for rank, (doc, score) in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


@dataclass
class BeirDataset:
    """A BEIR-layout folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``, ``runs/*.trec``."""

    root: Path
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> BeirDataset:
        root = Path(root)
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (root / name).is_file():
                raise DataError(f"{root} is not a BEIR folder: {name} is missing")
        corpus = {
            str(d["_id"]): {"title": d.get("title") or "", "text": d.get("text") or ""}
            for d in read_jsonl(root / "corpus.jsonl")
        }
        queries = {str(q["_id"]): q["text"] for q in read_jsonl(root / "queries.jsonl")}
        qrels = {}
        if (root / "qrels").is_dir():
            for p in sorted((root / "qrels").glob("*.tsv")):
                qrels[p.stem] = read_qrels(p)
        return cls(root, corpus, queries, qrels)

    @property
    def name(self) -> str:
        return self.root.name

    def split(self, split: str) -> dict[str, dict[str, int]]:
        if split not in self.qrels:
            raise DataError(f"{self.root}: no qrels/{split}.tsv (have: {sorted(self.qrels)})")
        return self.qrels[split]

    def runs(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "runs").glob("*.trec")) if (self.root / "runs").is_dir() else []

    def run(self, name: str) -> dict[str, list[tuple[str, float]]]:
        path = self.root / "runs" / f"{name}.trec"
        if not path.is_file():
            path = Path(name)
        if not path.is_file():
            raise DataError(f"run {name!r} not found in {self.root / 'runs'} (have: {self.runs()})")
        return read_trec_run(path)


@dataclass
class LongContextDataset:
    """``documents.jsonl`` + ``questions.jsonl`` with evidence character spans."""

    root: Path
    documents: dict[str, dict[str, str]]
    questions: list[dict[str, Any]]

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> LongContextDataset:
        root = Path(root)
        for name in ("documents.jsonl", "questions.jsonl"):
            if not (root / name).is_file():
                raise DataError(f"{root} is not a long-context folder: {name} is missing")
        documents = {str(d["id"]): {"title": d.get("title") or "", "text": d["text"]}
                     for d in read_jsonl(root / "documents.jsonl")}
        questions = list(read_jsonl(root / "questions.jsonl"))
        return cls(root, documents, questions)


def shared_data_dir() -> Path | None:
    """``$QRHEAD_DATA`` or the workplace's ``../shared/data`` next to the repository, if present."""
    env = os.environ.get("QRHEAD_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return None
