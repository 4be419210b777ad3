"""HotpotQA with answers for ``qrhead eval qa --task hotpotqa``: the converter of the public "hard"
distractor sample, its reader, the two settings' items, and HotpotQA's official answer EM / F1.

The sample: 100 HotpotQA dev (distractor) questions of level "hard", with answers, as a pandas pickle in
the reflexion repository (https://github.com/noahshinn/reflexion,
``hotpotqa_runs/data/hotpot-qa-distractor-sample.joblib``). :func:`convert` writes it in the BEIR layout of
the shared ``hotpotqa-100`` folder (``corpus.jsonl`` with ``_id`` = ``<qid>::<i>``, ``queries.jsonl``,
``qrels/test.tsv`` = the supporting paragraphs, ``runs/given.trec`` = each question's 10 paragraphs in their
given order) plus ``answers.jsonl`` (``id``, ``answer``, ``type``, ``level``, ``supporting_facts``) and a
README. The data are CC BY-SA 4.0 (HotpotQA); the converted folder lives outside the repository
(:func:`default_dir`). ``scripts/convert_hotpotqa_sample.py`` is the command.

Settings (:func:`hotpotqa_items`): ``distractor``: the question's own 10 paragraphs in their given order;
``haystack``: those 10 plus ``others`` (40) paragraphs of other questions of the same file, drawn and
shuffled by a generator seeded with ``seed`` and the question id (stable: the same for every run).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import sys
import types
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_PATH = "hotpotqa_runs/data/hotpot-qa-distractor-sample.joblib"
SAMPLE_URL = "https://github.com/noahshinn/reflexion/blob/main/" + SAMPLE_PATH
#: sha256 of the sample as committed in noahshinn/reflexion (commit 5942b44c, 2023-05-21)
SAMPLE_SHA256 = "b3e49c0aea1f8151fe307b3af2e7d8fa13271e2401a4c74b1e053137c37b9790"
SETTINGS = ("distractor", "haystack")


def default_dir() -> Path:
    """Where the converted sample lives: ``<cache root>/data/hotpotqa-hard-100`` (by default
    ``~/.cache/qrhead-integrations/data/hotpotqa-hard-100``)."""
    from ..engine.loading import cache_root

    return cache_root() / "data" / "hotpotqa-hard-100"


# --- answers (hotpot_evaluate_v1.py) -------------------------------------------------------------

def normalize_answer(s: str) -> str:
    """HotpotQA's official normalisation: lower case, no punctuation, no articles, single spaces."""
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1_score(prediction: str, ground_truth: str) -> tuple[float, float, float]:
    """(F1, precision, recall) of the normalised tokens, as HotpotQA's official script: 0 when either side
    normalises to yes / no / noanswer and the two differ."""
    pred, gold = normalize_answer(prediction), normalize_answer(ground_truth)
    zero = (0.0, 0.0, 0.0)
    if pred in ("yes", "no", "noanswer") and pred != gold:
        return zero
    if gold in ("yes", "no", "noanswer") and pred != gold:
        return zero
    pred_tokens, gold_tokens = pred.split(), gold.split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return zero
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


# --- the sample ----------------------------------------------------------------------------------

def answer_scores(prediction: str, ground_truth: str) -> dict[str, float]:
    """One answer's official EM and F1 as the QA records store them (F1 to 4 places)."""
    return {"em": float(exact_match_score(prediction, ground_truth)),
            "f1": round(f1_score(prediction, ground_truth)[0], 4)}


def _numeric_index_shim() -> types.ModuleType:
    """``pandas.core.indexes.numeric`` (removed in pandas 2) for unpickling old DataFrames."""
    import pandas as pd

    shim = types.ModuleType("pandas.core.indexes.numeric")
    for name in ("Int64Index", "Float64Index", "UInt64Index", "NumericIndex"):
        setattr(shim, name, pd.Index)
    shim.RangeIndex = pd.RangeIndex  # type: ignore[attr-defined]
    return shim


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_sample(path: str | Path) -> list[dict[str, Any]]:
    """The questions of a joblib / pickle file holding a pandas DataFrame (old pandas pickles included:
    a shim stands in for ``pandas.core.indexes.numeric`` while loading) or a list of records, as
    :func:`normalize_record` dicts."""
    import joblib

    name = "pandas.core.indexes.numeric"
    added = False
    try:
        __import__(name)
    except ImportError:
        sys.modules[name] = _numeric_index_shim()
        added = True
    try:
        data = joblib.load(path)
    finally:
        if added:
            sys.modules.pop(name, None)
    rows = data.to_dict("records") if hasattr(data, "to_dict") else list(data)
    return [normalize_record(r) for r in rows]


def _plain(x: Any) -> Any:
    """numpy arrays / scalars as Python lists / scalars, recursively."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def normalize_record(r: dict[str, Any]) -> dict[str, Any]:
    """One question as ``{"id", "question", "answer", "type", "level", "supporting_facts": [[title,
    sent_id], ...], "context": [[title, [sentence, ...]], ...]}``, from the Hugging Face layout (dicts of
    arrays, as in the sample) or the original JSON layout (lists of pairs)."""
    sf, ctx = r["supporting_facts"], r["context"]
    if isinstance(sf, dict):
        sf = list(zip(_plain(sf["title"]), _plain(sf["sent_id"])))
    if isinstance(ctx, dict):
        ctx = list(zip(_plain(ctx["title"]), _plain(ctx["sentences"])))
    return {"id": str(r.get("id", r.get("_id"))), "question": str(r["question"]), "answer": str(r["answer"]),
            "type": str(r.get("type", "")), "level": str(r.get("level", "")),
            "supporting_facts": [[str(t), int(s)] for t, s in _plain(list(sf))],
            "context": [[str(t), [str(s) for s in _plain(sents)]] for t, sents in ctx]}


def paragraph_text(sentences: Sequence[str]) -> str:
    """A paragraph's sentences joined by single spaces (HotpotQA's sentences carry their leading space)."""
    return " ".join(s.strip() for s in sentences if s.strip())


def convert(records: Sequence[dict[str, Any]], out: str | Path, *, source: str = SAMPLE_URL,
            sha256: str | None = None) -> dict[str, Any]:
    """Write ``records`` (:func:`normalize_record` dicts) in the BEIR layout plus ``answers.jsonl`` and
    a README with the source, its sha256 and the licence; returns the folder's statistics."""
    out = Path(out)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    types_: Counter[str] = Counter()
    n_par = 0
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as corpus, \
            open(out / "queries.jsonl", "w", encoding="utf-8") as queries, \
            open(out / "answers.jsonl", "w", encoding="utf-8") as answers, \
            open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as qrels, \
            open(out / "runs" / "given.trec", "w", encoding="utf-8") as run:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for r in records:
            qid = r["id"]
            queries.write(json.dumps({"_id": qid, "text": r["question"]}, ensure_ascii=False) + "\n")
            answers.write(json.dumps({"id": qid, "answer": r["answer"], "type": r["type"], "level": r["level"],
                                      "supporting_facts": r["supporting_facts"]}, ensure_ascii=False) + "\n")
            supporting = {t for t, _ in r["supporting_facts"]}
            found = set()
            for i, (title, sentences) in enumerate(r["context"]):
                pid = f"{qid}::{i}"
                corpus.write(json.dumps({"_id": pid, "title": title, "text": paragraph_text(sentences)},
                                        ensure_ascii=False) + "\n")
                run.write(f"{qid} Q0 {pid} {i + 1} 0.0 given\n")
                if title in supporting:
                    qrels.write(f"{qid}\t{pid}\t1\n")
                    found.add(title)
                n_par += 1
            if found != supporting:
                raise ValueError(f"question {qid}: supporting paragraphs {sorted(supporting - found)} are not in "
                                 "its context")
            types_[r["type"]] += 1
    stats = {"questions": len(records), "paragraphs": n_par, "types": dict(sorted(types_.items())),
             "levels": dict(sorted(Counter(r["level"] for r in records).items())), "source": source,
             "sha256": sha256}
    (out / "README.md").write_text(_README.format(
        n=len(records), paragraphs=n_par, source=source, sha256=sha256 or "(not recorded)",
        types=", ".join(f"{k} {v}" for k, v in stats["types"].items()),
        levels=", ".join(f"{k} {v}" for k, v in stats["levels"].items())), encoding="utf-8")
    (out / "source.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return stats


_README = """# HotpotQA hard distractor sample, with answers

{n} HotpotQA (dev, distractor setting) questions with their answers, each with its own 10 paragraphs
({paragraphs} paragraphs in all); types: {types}; levels: {levels}.

Source: {source}
(the reflexion repository's sample of HotpotQA), sha256 of the file: `{sha256}`.
Converted by `scripts/convert_hotpotqa_sample.py` of qrhead-integrations.

Layout (BEIR, as `hotpotqa-100` of the shared data):
- `corpus.jsonl`: `{{"_id": "<qid>::<i>", "title", "text"}}`, paragraph `i` of question `qid`, its sentences
  joined by spaces
- `queries.jsonl`: `{{"_id", "text"}}`
- `qrels/test.tsv`: the supporting paragraphs (score 1)
- `runs/given.trec`: each question's 10 paragraphs in their given order
- `answers.jsonl`: `{{"id", "answer", "type", "level", "supporting_facts": [[title, sent_id], ...]}}`

Licence: HotpotQA (Yang et al., 2018, https://hotpotqa.github.io) is distributed under CC BY-SA 4.0
(https://creativecommons.org/licenses/by-sa/4.0/); this converted copy is under the same licence. Research
data: use it to measure, do not copy it into a code repository or a package.
"""


# --- the converted folder ------------------------------------------------------------------------

@dataclass
class HotpotQuestion:
    id: str
    question: str
    answer: str
    type: str
    level: str
    paragraphs: list[dict[str, str]]  # {"_id", "title", "text"}, the given order
    supporting: list[str]  # paragraph ids


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_hotpotqa(folder: str | Path, *, answers_required: bool = True) -> list[HotpotQuestion]:
    """The questions of a converted folder (BEIR layout plus ``answers.jsonl``), in ``queries.jsonl``'s
    order; paragraphs in ``runs/given.trec``'s order (else the ``::<i>`` suffix's). With
    ``answers_required=False`` a folder without answers (e.g. the shared ``hotpotqa-100``, used for
    selection only) reads with empty answers."""
    folder = Path(folder)
    has_answers = (folder / "answers.jsonl").is_file()
    if answers_required and not has_answers:
        raise FileNotFoundError(f"{folder / 'answers.jsonl'} is missing: convert the sample first "
                                "(python scripts/convert_hotpotqa_sample.py)")
    corpus = {d["_id"]: d for d in _jsonl(folder / "corpus.jsonl")}
    answers = {a["id"]: a for a in _jsonl(folder / "answers.jsonl")} if has_answers else {}
    order: dict[str, list[tuple[int, str]]] = {}
    run = folder / "runs" / "given.trec"
    if run.is_file():
        for line in run.read_text(encoding="utf-8").splitlines():
            if line.strip():
                qid, _, pid, rank, *_ = line.split()
                order.setdefault(qid, []).append((int(rank), pid))
    else:
        for pid in corpus:
            qid, _, i = pid.rpartition("::")
            order.setdefault(qid, []).append((int(i), pid))
    supporting: dict[str, list[str]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            qid, pid, score = line.split("\t")
            if float(score) > 0:
                supporting.setdefault(qid, []).append(pid)
    out = []
    for q in _jsonl(folder / "queries.jsonl"):
        qid = q["_id"]
        a = answers[qid] if has_answers else {"answer": ""}
        out.append(HotpotQuestion(qid, q["text"], a["answer"], a.get("type", ""), a.get("level", ""),
                                  [corpus[pid] for _, pid in sorted(order[qid])], supporting.get(qid, [])))
    return out


def haystack(questions: Sequence[HotpotQuestion], index: int, *, others: int = 40, seed: int = 0
             ) -> list[dict[str, str]]:
    """Question ``index``'s own paragraphs plus ``others`` paragraphs of the other questions, shuffled.
    Drawn by a generator seeded with ``seed`` and the question's id (the same haystack in every run, for
    any list holding the same questions); a paragraph whose title is already in the haystack (the own
    paragraphs' titles included) is not drawn again, so there are no duplicates."""
    q = questions[index]
    pool = sorted((p for o in questions if o.id != q.id for p in o.paragraphs), key=lambda p: p["_id"])
    rng = random.Random(f"hotpotqa-haystack:{seed}:{q.id}")
    rng.shuffle(pool)
    titles = {p["title"] for p in q.paragraphs}
    drawn = []
    for p in pool:
        if len(drawn) >= others:
            break
        if p["title"] not in titles:
            titles.add(p["title"])
            drawn.append(p)
    hay = list(q.paragraphs) + drawn
    rng.shuffle(hay)
    return hay


def paragraph_context(p: dict[str, str]) -> str:
    """A paragraph as the generator and the selectors see it."""
    return f"(Title: {p.get('title') or ''}) {p['text']}".strip()


def hotpotqa_items(folder: str | Path, *, setting: str = "distractor", seed: int = 0, others: int = 40,
                   limit: int | None = None, answers_required: bool = True) -> list[Any]:
    """The QA items of a converted folder: one group per question, its candidates the paragraphs of
    ``setting`` (``distractor``: its own 10 in their given order; ``haystack``: :func:`haystack`), gold =
    its supporting paragraphs; ``meta`` holds the answer type and level, and ``answer_elsewhere``: how many
    paragraphs drawn from *other* questions hold the answer (its normalised form), which makes a haystack's
    "answer in context" an upper bound rather than evidence (0 in the distractor setting)."""
    from ..chunks import locate_chunks
    from .qa import QAItem, answer_correct

    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, not {setting!r}")
    questions = read_hotpotqa(folder, answers_required=answers_required)
    items = []
    for i, q in enumerate(questions[:limit] if limit is not None else questions):
        paragraphs = q.paragraphs if setting == "distractor" else haystack(questions, i, others=others, seed=seed)
        texts = [paragraph_context(p) for p in paragraphs]
        document = "\n\n".join(texts)
        chunks = locate_chunks(document, texts, source_id=q.id)
        gold = [j for j, p in enumerate(paragraphs) if p["_id"] in set(q.supporting)]
        own = {p["_id"] for p in q.paragraphs}
        elsewhere = sum(answer_correct(t, [q.answer]) for p, t in zip(paragraphs, texts) if p["_id"] not in own)
        items.append(QAItem(q.id, q.question, [q.answer], q.id, document, chunks, gold,
                            meta={"type": q.type, "level": q.level, "setting": setting,
                                  "paragraph_ids": [p["_id"] for p in paragraphs], "answer_elsewhere": elsewhere}))
    return items
