"""Give the shared ``hotpotqa-100`` dev questions their answers, for rules that need a reader on dev.

The shared folder (100 HotpotQA train questions, their 10 paragraphs, the supporting ones as qrels) has no
answers. They are public: the same 100 questions, in the same order, are HippoRAG's
``data/hotpotqa_train.json`` (https://github.com/OSU-NLP-Group/HippoRAG, first commit 3d95d255; the
official HotpotQA record layout with ``answer``, ``type``, ``level``, ``supporting_facts``). This script
checks that file (sha256, every id and question text equal to the shared folder's, every supporting
paragraph title equal to the shared qrels') and writes the shared folder's files plus ``answers.jsonl``
OUTSIDE the repository (HotpotQA is CC BY-SA 4.0 research data):

    git --git-dir=/path/to/HippoRAG/.git show 3d95d255a8db0c1699b853cfb4fbe5056708162d:data/hotpotqa_train.json \\
        > /tmp/hipporag_hotpotqa_train.json
    python scripts/hotpotqa_dev_answers.py /tmp/hipporag_hotpotqa_train.json
    # -> ~/.cache/qrhead-integrations/data/hotpotqa-100-dev (or --out DIR)

The output reads with ``hotpotqa_items`` like the converted test sample; its paragraphs, their order and
the haystacks built from them are exactly the shared folder's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "hotpotqa-100"
SOURCE_URL = ("https://github.com/OSU-NLP-Group/HippoRAG/blob/3d95d255a8db0c1699b853cfb4fbe5056708162d/"
              "data/hotpotqa_train.json")
SOURCE_SHA256 = "6c0e2689d03c94b3bb4d5f94ed806ea4f4eb4f46c12132f8e91df774ad5c5a22"
FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "runs/given.trec")


def default_dir() -> Path:
    from qrhead_integrations.engine.loading import cache_root

    return cache_root() / "data" / "hotpotqa-100-dev"


def check(records: list[dict], shared: Path) -> list[str]:
    """What does not match between the answer records and the shared folder (empty: all matches)."""
    problems = []
    queries = [json.loads(line) for line in (shared / "queries.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    if [q["_id"] for q in queries] != [r["_id"] for r in records]:
        problems.append("the ids (or their order) differ from the shared queries.jsonl")
    corpus = {}
    for line in (shared / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            corpus[d["_id"]] = d
    gold: dict[str, set[str]] = {}
    for line in (shared / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            qid, pid, score = line.split("\t")
            if float(score) > 0:
                gold.setdefault(qid, set()).add(corpus[pid]["title"])
    for q, r in zip(queries, records):
        if q["text"] != r["question"]:
            problems.append(f"{r['_id']}: question text differs")
        if {t for t, _ in r["supporting_facts"]} != gold.get(r["_id"], set()):
            problems.append(f"{r['_id']}: supporting titles differ from the qrels")
        if not str(r.get("answer", "")).strip():
            problems.append(f"{r['_id']}: no answer")
    return problems


def main(argv: list[str] | None = None) -> int:
    from qrhead_integrations.eval.hotpotqa import sha256_of

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="HippoRAG's data/hotpotqa_train.json (commit 3d95d255)")
    ap.add_argument("--shared", default=str(SHARED), help="the shared hotpotqa-100 folder")
    ap.add_argument("--out", default=None, help=f"output folder (default: {default_dir()})")
    args = ap.parse_args(argv)
    digest = sha256_of(args.source)
    if digest != SOURCE_SHA256:
        print(f"error: {args.source}: sha256 {digest}, not {SOURCE_SHA256} (HippoRAG 3d95d255)", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser() if args.out else default_dir()
    if out.resolve().is_relative_to(REPO):
        print(f"error: {out} is inside the repository; the data stay outside it (CC BY-SA 4.0)", file=sys.stderr)
        return 2
    shared = Path(args.shared)
    records = json.loads(Path(args.source).read_text(encoding="utf-8"))
    problems = check(records, shared)
    if problems:
        print("error: the answers do not fit the shared folder:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        return 2
    for name in FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / name, out / name)
    with open(out / "answers.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"id": r["_id"], "answer": r["answer"], "type": r["type"], "level": r["level"],
                                "supporting_facts": r["supporting_facts"]}, ensure_ascii=False) + "\n")
    types = {t: sum(r["type"] == t for r in records) for t in sorted({r["type"] for r in records})}
    source = {"questions": len(records), "types": types, "source": SOURCE_URL, "sha256": digest,
              "paragraphs": f"copied from {shared}", "licence": "CC BY-SA 4.0 (HotpotQA)"}
    (out / "source.json").write_text(json.dumps(source, indent=1) + "\n")
    print(json.dumps({"out": str(out), **source}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
