"""End to end: a selector picks the context of a long input, a generator answers (``qrhead eval qa``).

Two long-context QA tasks from ``../shared/data``:

- ``squad``: whole SQuAD articles (~8K tokens). Each article is split by LlamaIndex's ``SentenceSplitter``
  into chunks counted in the *generator's* tokens; a question's gold chunks are those inside its evidence
  paragraph that hold an answer string (else the whole paragraph's chunks). Questions are grouped by
  article, so every scorer reads an article once for all its questions (``scorer.encode(chunks,
  queries=...)`` then ``.rank(q)``), and the full-context generator reuses the article's prefix cache.
- ``nq``: NQ-open multi-document ("lost in the middle"): the gold passage among ``depth - 1`` BM25
  distractors from other questions' passages that do not contain the answer
  (:func:`~.sets.nq_multidoc`); distractors in BM25 order, the gold passage first, in the middle or last
  (cycled over the questions).
- ``hotpotqa``: multi-hop HotpotQA questions with answers (the converted "hard" distractor sample,
  :mod:`.hotpotqa`); the candidates are paragraphs, gold = the two supporting paragraphs; ``distractor``:
  the question's own 10 paragraphs, ``haystack``: those plus 40 of other questions, shuffled (seeded).
  Scored also by HotpotQA's official answer EM and F1.

Every selector gets the same generator token budget (and/or at most ``top_k`` chunks: ``--k``); selected
chunks are handed over in document order (``*-rank-order``, or every selector with ``--context-order
ranked``: best first). Selectors: ``full``
(everything, no selection), ``oracle`` (the gold chunks only), ``bm25``, ``dense`` (all-MiniLM-L6-v2),
``qrhead`` (the embedded SmolLM2 scorer, its registered heads), ``qrhead-gen`` (the generator's own
weights and its registered head set: :func:`~qrhead_integrations.llama_index.llm.scorer_from_llm` on the
generator's LLM object),
``all-heads`` and ``random-heads`` (SmolLM2: every head; 16 random heads), ``qrhead-trim`` (``qrhead``
with each chunk trimmed to its evidence sentences, :func:`~qrhead_integrations.chunks.select_chunks`'
``trim_to_evidence``), ``qrhead-bm25`` (``qrhead``'s pass fused with BM25 over the chunks as the first
stage, the way the adapters fuse a retriever's scores: the head set's recommended fusion). A ``@N``
suffix sets another budget for one selector (``qrhead-trim@256``).

Answers: greedy decoding through the framework's own LLM class (LlamaIndex ``HuggingFaceLLM`` or
LangChain ``ChatHuggingFace`` over ``HuggingFacePipeline``), holding the model already loaded; a short
answer prompt. Correct = a SQuAD-normalised gold answer is contained in the normalised output.

Per-question results go to a JSONL file as they are made (a rerun resumes, and adds only the selectors a
record lacks, so a selector can join a finished run; ``--shard I/N`` splits a long run over processes that
share the file, its lines written under a lock); the summary has accuracy
with paired bootstrap intervals against ``full`` and ``bm25``, evidence recall, answer-in-context rate,
generator tokens and seconds per question.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import random
import re
import string
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..chunks import Chunk, ChunkSelection, locate_chunks, select_from_ranking
from ..engine.ranking import RankedPassage

logger = logging.getLogger("qrhead_integrations")

PROMPT = ("Answer the question with a short phrase from the context.\n\n"
          "Context:\n{context}\n\nQuestion: {question}\nAnswer:")

SELECTORS = ("full", "oracle", "bm25", "dense", "qrhead", "qrhead-gen", "all-heads", "random-heads",
             "qrhead-rank-order", "qrhead-trim", "qrhead-bm25")
DEFAULT_SELECTORS = ("full", "oracle", "bm25", "dense", "qrhead", "qrhead-gen", "all-heads", "random-heads")


def answer_prompt(context: str, question: str, template: str = PROMPT) -> str:
    return template.format(context=context, question=question)


# --- answers -------------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_correct(output: str, answers: Sequence[str]) -> bool:
    """A normalised gold answer occurs in the normalised output (as whole words)."""
    out = f" {normalize_answer(output)} "
    return any(g and f" {g} " in out for g in (normalize_answer(a) for a in answers))


# --- items -------------------------------------------------------------------------------------

@dataclass
class QAItem:
    """One question over its long input: ``chunks`` (document order, exact offsets into ``document``),
    ``gold`` chunk indices; items with the same ``group`` share ``document`` and ``chunks``."""

    id: str
    question: str
    answers: list[str]
    group: str
    document: str
    chunks: list[Chunk]
    gold: list[int]
    position: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # task fields copied into the record (hotpotqa: type, ...)


def squad_items(root: str | Path, tokenizer: Any, *, articles: int = 12, per_article: int = 5,
                chunk_tokens: int = 128, seed: int = 0, min_chars: int = 20000,
                max_chars: int = 40000) -> list[QAItem]:
    """``per_article`` seeded questions from each of ``articles`` seeded SQuAD articles of
    ``min_chars``-``max_chars`` characters (~5-9K tokens), chunked by SentenceSplitter in ``tokenizer``'s
    tokens. Questions without an answer string are skipped."""
    from .chunks import split_document
    from .data import LongContextDataset

    ds = LongContextDataset.load(root)
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for q in sorted(ds.questions, key=lambda q: q["id"]):
        by_doc.setdefault(q["doc_id"], []).append(q)
    docs = sorted(d for d in by_doc if min_chars <= len(ds.documents[d]["text"]) <= max_chars)
    rng = random.Random(seed)
    rng.shuffle(docs)
    items: list[QAItem] = []
    for doc_id in docs[:articles]:
        text = ds.documents[doc_id]["text"]
        spans = split_document(text, tokenizer, chunk_tokens)
        chunks = locate_chunks(text, [text[a:b] for a, b in spans], source_id=doc_id)
        qs = [q for q in by_doc[doc_id] if any(a.strip() for a in q.get("answers", []))]
        random.Random(f"{seed}:{doc_id}").shuffle(qs)
        for q in sorted(qs[:per_article], key=lambda q: q["id"]):
            items.append(QAItem(q["id"], q["question"], list(q["answers"]), doc_id, text, chunks,
                                squad_gold(chunks, q["evidence"], q["answers"])))
    return items


def squad_gold(chunks: Sequence[Chunk], evidence: Sequence[Sequence[int]], answers: Sequence[str]) -> list[int]:
    """Chunks inside the evidence paragraph that hold an answer (else every chunk overlapping it)."""
    inside = [c.index for c in chunks if any(c.start < e1 and c.end > e0 for e0, e1 in evidence)]
    with_answer = [i for i in inside if answer_correct(chunks[i].text, answers)]
    return with_answer or inside


POSITIONS = ("first", "middle", "last")


def nq_items(root: str | Path, *, n: int = 60, depth: int = 20, skip: int = 1000, seed: int = 0,
             positions: Sequence[str] = POSITIONS) -> list[QAItem]:
    """NQ-open multi-document items: question ``i`` puts its gold passage at ``positions[i % len]``
    (``first``, ``middle`` = index ``depth // 2``, ``last``) among ``depth - 1`` distractors in BM25 order."""
    from .sets import nq_multidoc

    data = nq_multidoc(Path(root), n=n, skip=skip, seed=seed, depth=depth)
    items = []
    for i, cand in enumerate(data.items):
        gold_id = next(iter(data.qrels[cand.qid]))
        g = cand.doc_ids.index(gold_id)
        docs = [d for j, d in enumerate(cand.passages) if j != g]  # distractors, BM25 order
        pos = positions[i % len(positions)]
        at = {"first": 0, "middle": len(docs) // 2, "last": len(docs)}[pos]
        docs.insert(at, cand.passages[g])
        texts = [f"(Title: {d.get('title') or ''}) {d['text']}".strip() for d in docs]
        document = "\n\n".join(texts)
        chunks = locate_chunks(document, texts, source_id=cand.qid)
        answers = _nq_answers(root, cand.qid)
        items.append(QAItem(cand.qid, cand.query, answers, cand.qid, document, chunks, [at], pos))
    return items


_NQ_ANSWERS: dict[str, list[list[str]]] = {}


def _nq_answers(root: str | Path, qid: str) -> list[str]:
    from .data import read_jsonl

    key = str(root)
    if key not in _NQ_ANSWERS:
        _NQ_ANSWERS[key] = [list(r.get("answers", [])) for r in read_jsonl(Path(root) / "nq-open-oracle.jsonl")]
    return _NQ_ANSWERS[key][int(qid.split("-")[1])]


# --- generation --------------------------------------------------------------------------------

class Generator:
    """Greedy short answers from a loaded causal LM, through a framework's own LLM class.

    ``framework="llama-index"``: ``llama_index.llms.huggingface.HuggingFaceLLM``; ``"langchain"``:
    ``langchain_huggingface.ChatHuggingFace`` over a ``HuggingFacePipeline``. Both are handed the model
    and tokenizer objects (nothing is loaded again). :meth:`answer_many` answers several questions about
    one context with the context's prefix computed once (transformers directly: the frameworks' classes
    have no prefix cache); the token ids are exactly those of :meth:`answer`'s prompt.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, *, framework: str = "llama-index",
                 max_new_tokens: int = 32, prompt: str = PROMPT) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.framework = framework
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        limit = getattr(model.config.get_text_config(), "max_position_embeddings", None) or 4096
        self.context_window = int(min(limit, 32768))
        self.llm = build_llm(model, tokenizer, name, framework=framework, max_new_tokens=max_new_tokens,
                             context_window=self.context_window)

    def chat_text(self, user: str) -> str:
        """The prompt text the LLM classes produce for one user message (chat template)."""
        return chat_text(self.tokenizer, user)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def answer(self, context: str, question: str) -> str:
        user = answer_prompt(context, question, self.prompt)
        if self.framework == "langchain":
            from langchain_core.messages import HumanMessage

            return clean_answer(str(self.llm.invoke([HumanMessage(content=user)]).content))
        return clean_answer(self.llm.complete(user).text)

    def answer_many(self, context: str, questions: Sequence[str]) -> list[str]:
        """:meth:`answer` for each question about one ``context``, reading the context once."""
        import torch

        prompts = [self.chat_text(answer_prompt(context, q, self.prompt)) for q in questions]
        ids = [self.tokenizer(p, return_tensors="pt")["input_ids"][0] for p in prompts]
        common = min(len(x) for x in ids) - 1
        for x in ids[1:]:
            diff = (x[:common] != ids[0][:common]).nonzero()
            if len(diff):
                common = int(diff[0])
        device = self.model.get_input_embeddings().weight.device
        outs = []
        from ..engine.kv import cache_kwargs, new_cache

        with torch.inference_mode():
            cache = new_cache(self.model)
            self.model(input_ids=ids[0][None, :common].to(device), logits_to_keep=1,
                       **cache_kwargs(self.model, cache))
            for x in ids:
                x = x[None].to(device)
                out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                          **cache_kwargs(self.model, copy.deepcopy(cache)), do_sample=False,
                                          max_new_tokens=self.max_new_tokens,
                                          pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
                outs.append(clean_answer(self.tokenizer.decode(out[0, x.shape[1]:], skip_special_tokens=True)))
        return outs


def chat_text(tokenizer: Any, user: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True)
    return user


def build_llm(model: Any, tokenizer: Any, name: str, *, framework: str = "llama-index", max_new_tokens: int = 32,
              context_window: int = 4096) -> Any:
    """The framework's own LLM class around an already loaded model (greedy decoding)."""
    if framework == "llama-index":
        from llama_index.llms.huggingface import HuggingFaceLLM

        return HuggingFaceLLM(
            model=model, tokenizer=tokenizer, model_name=name, tokenizer_name=name, context_window=context_window,
            max_new_tokens=max_new_tokens, generate_kwargs={"do_sample": False},
            completion_to_prompt=lambda text: chat_text(tokenizer, text), is_chat_model=True,
        )
    if framework == "langchain":
        from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
        from transformers import pipeline

        pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, max_new_tokens=max_new_tokens,
                        do_sample=False, return_full_text=False)
        return ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe, model_id=name), tokenizer=tokenizer,
                               model_id=name)
    raise ValueError(f"framework must be 'llama-index' or 'langchain', not {framework!r}")


def clean_answer(text: str) -> str:
    """The answer's first non-empty line, stripped."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


# --- selection ---------------------------------------------------------------------------------

def ranking(scores: Sequence[float], texts: Sequence[str]) -> list[RankedPassage]:
    """A plain score list as the library's ranking results (best first, ties by position)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return [RankedPassage(i, float(scores[i]), r + 1, texts[i]) for r, i in enumerate(order)]


def parse_selector(spec: str, budget: int) -> tuple[str, int]:
    """``name`` or ``name@budget``."""
    name, _, b = spec.partition("@")
    if name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; known: {', '.join(SELECTORS)}")
    return name, int(b) if b else budget


@dataclass
class Scorers:
    """What the selectors need, built once: the small QRHead scorer, the generator-weights scorer, the
    random head set, the dense encoder."""

    smol: Any = None
    gen: Any = None
    random_heads: Any = None
    dense: Any = None
    evidence: int = 1
    evidence_context: int = 1


@dataclass
class GroupState:
    """Per group (article): encodings and indexes made once for all its questions."""

    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


def clock() -> float:
    """The clock of per-selector timings: this process's CPU time. Runs use one thread
    (``OMP_NUM_THREADS=1``), where CPU seconds are the wall seconds of an otherwise idle core; wall
    seconds on a shared machine depend on what else runs."""
    return time.process_time()


def _timed(state: GroupState, key: str, make: Callable[[], Any]) -> Any:
    if key not in state.cache:
        t = clock()
        state.cache[key] = make()
        state.seconds[key] = clock() - t
    return state.cache[key]


def source_ranking(source: str, item: QAItem, scorers: Scorers, state: GroupState, questions: Sequence[str]
                   ) -> tuple[list[Any], float]:
    """(ranking of the item's chunks, seconds: per-question work plus this question's share of the
    group's one-off work) for a ranking source."""
    texts = [c.text for c in item.chunks]
    n_q = max(1, len(questions))
    known = set(state.seconds)
    t0 = clock()
    if source == "bm25":
        ranked = ranking(_bm25_scores(item, state, texts), texts)
        shared = state.seconds["bm25"]
    elif source == "qrhead-bm25":  # the qrhead pass, fused with BM25 over the chunks as the first stage
        first_stage = _bm25_scores(item, state, texts)
        enc = _timed(state, "qrhead", lambda: scorers.smol.encode(texts, queries=list(questions)))
        ranked = enc.rank(item.question, first_stage_scores=first_stage, evidence=scorers.evidence)
        shared = state.seconds["qrhead"] + state.seconds["bm25"]
    elif source == "dense":
        vecs = _timed(state, "dense", lambda: scorers.dense.encode(texts))
        ranked = ranking(list(vecs @ scorers.dense.encode([item.question])[0]), texts)
        shared = state.seconds["dense"]
    elif source in ("qrhead", "qrhead-gen"):
        scorer = scorers.smol if source == "qrhead" else scorers.gen
        enc = _timed(state, source, lambda: scorer.encode(texts, queries=list(questions)))
        key = f"{source}:{item.id}"  # the ranking, shared by the selectors that read this pass
        if key not in state.cache:
            state.cache[key] = enc.rank(item.question, evidence=scorers.evidence)
        ranked = state.cache[key]
        shared = state.seconds[source]
    elif source in ("all-heads", "random-heads"):
        enc = _timed(state, "all", lambda: scorers.smol.encode(texts, heads="all", queries=list(questions)))
        key = f"all:{item.id}"
        if key not in state.cache:
            state.cache[key] = enc.head_masses(item.question)
        masses = state.cache[key]
        heads = None if source == "all-heads" else scorers.random_heads.heads
        ranked = ranking(list(masses.scores(heads)), texts)
        shared = state.seconds["all"]
    else:
        raise ValueError(source)
    made_now = sum(v for k, v in state.seconds.items() if k not in known)  # the group's one-off work, if done now
    return ranked, clock() - t0 - made_now + shared / n_q


def _bm25_scores(item: QAItem, state: GroupState, texts: Sequence[str]) -> list[float]:
    """BM25 (``bm25s``) scores of the item's chunks for its question; the index is built once per group."""
    from .first_stage import BM25

    index = _timed(state, "bm25", lambda: BM25.over(texts))
    return index.scores(item.question)


def select(name: str, budget: int | None, item: QAItem, scorers: Scorers, state: GroupState,
           questions: Sequence[str], count_tokens: Callable[[str], int], top_k: int | None = None,
           context_order: str = "input") -> tuple[ChunkSelection, float]:
    """The context a selector hands over for ``item`` (document order unless ``*-rank-order``): the
    ranking's best chunks within ``budget`` generator tokens and at most ``top_k`` chunks (None: no limit).
    ``context_order="ranked"``: every selector hands its chunks over best first."""
    if name == "oracle":
        return select_from_ranking(item.question, item.chunks, ranking([1.0 if c.index in item.gold else 0.0
                                                                        for c in item.chunks],
                                                                       [c.text for c in item.chunks])[:len(item.gold)],
                                   token_budget=budget, top_k=top_k, keep_document_order=True,
                                   count_tokens=count_tokens), 0.0
    source = {"qrhead-rank-order": "qrhead", "qrhead-trim": "qrhead"}.get(name, name)
    ranked, seconds = source_ranking(source, item, scorers, state, questions)
    t = clock()
    sel = select_from_ranking(item.question, item.chunks, ranked, token_budget=budget, top_k=top_k,
                              keep_document_order=name != "qrhead-rank-order" and context_order == "input",
                              count_tokens=count_tokens,
                              trim_to_evidence=scorers.evidence if name == "qrhead-trim" else None,
                              evidence_context=scorers.evidence_context)
    return sel, seconds + clock() - t


# --- the run -------------------------------------------------------------------------------------

def read_done(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by an interrupted run
                        continue
                    done[rec["id"]] = rec
    return done


def run_setup(scorers: Scorers, *, budget: int, **settings: Any) -> dict[str, Any]:
    """What decides a run's answers besides its selectors (task shape, budget, generator settings, the
    scorers' heads and options), recorded with every question so that a rerun never resumes another
    setup's records under the same name."""
    def digest(scorer: Any) -> str | None:
        if scorer is None:
            return None
        heads = scorer.heads
        text = json.dumps([str(heads), heads.weights, getattr(scorer, "model_name", None),
                           scorer.options.to_dict()], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    return {"budget": budget, **settings, "scorer": digest(scorers.smol), "generator_scorer": digest(scorers.gen),
            "evidence": scorers.evidence, "evidence_context": scorers.evidence_context}


def _check_setup(path: Path, done: dict[str, dict[str, Any]], items: Sequence[QAItem], generator_name: str,
                 setup: dict[str, Any] | None) -> None:
    """Refuse to resume records of another generator or another setup (records written before setups were
    recorded carry none and are taken as they are)."""
    for it in items:
        rec = done.get(it.id)
        if rec is None:
            continue
        if rec.get("generator") != generator_name:
            raise ValueError(f"{path} holds answers of {rec.get('generator')}, not of {generator_name}: "
                             "pass another --jsonl (or --out) to add selectors with this generator")
        theirs = rec.get("setup")
        if setup is None or theirs is None:
            continue
        differ = sorted(k for k in setup.keys() & theirs.keys() if setup[k] != theirs[k])
        if differ:
            shown = ", ".join(f"{k}={theirs[k]!r} there, {setup[k]!r} now" for k in differ)
            raise ValueError(f"{path} holds answers made with another setup ({shown}): pass another --jsonl "
                             "(or --out) for this setup")


def records_elsewhere(jsonl: Path, setup: dict[str, Any], generator_name: str) -> list[Path]:
    """Other JSONL files beside ``jsonl`` whose records were made with this generator and this setup: a run
    named by another ``--out`` starts from scratch, and these are what ``--jsonl`` could resume instead."""
    same = json.loads(json.dumps(setup, default=str))
    found = []
    for path in sorted(jsonl.parent.glob("*.jsonl")) if jsonl.parent.is_dir() else []:
        if path == jsonl:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                first = json.loads(next((line for line in f if line.strip()), "{}"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if first.get("generator") == generator_name and first.get("setup") == same:
            found.append(path)
    return found


def parse_shard(spec: str) -> tuple[int, int]:
    """``I/N`` (``1 <= I <= N``): the I-th of N shards of a run."""
    i, sep, n = spec.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ValueError(f"a shard is I/N with 1 <= I <= N (e.g. 1/2), not {spec!r}")
    return index, count


def shard_items(items: Sequence[QAItem], index: int, count: int) -> list[QAItem]:
    """The items of shard ``index`` of ``count`` (1-based): whole groups dealt in turn (a group's questions
    share one document and its prefix cache), so the shards are disjoint and together are ``items``."""
    groups: dict[str, int] = {}
    for it in items:
        groups.setdefault(it.group, len(groups))
    return [it for it in items if groups[it.group] % count == index - 1]


@contextlib.contextmanager
def file_lock(f: Any) -> Iterator[None]:
    """An exclusive lock on an open file (POSIX ``flock``; elsewhere none), so that shards of one run
    writing the same JSONL never interleave their lines."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def run_qa(items: Sequence[QAItem], generator: Generator, selectors: Sequence[str], scorers: Scorers, *,
           budget: int | None = 512, jsonl: str | Path, show_progress: bool = True, task: str = "",
           setup: dict[str, Any] | None = None, top_k: int | None = None, context_order: str = "input"
           ) -> list[dict[str, Any]]:
    """Answer every item with every selector; one JSONL line per question, written as it is done. A rerun
    resumes: a question already in ``jsonl`` is skipped, or, when its record lacks some of ``selectors``,
    answered with those only and written again (the last line of an id wins). ``setup`` (see
    :func:`run_setup`) is stored with each record; resuming records of another setup or generator is an
    error. ``top_k``: at most this many chunks per selector besides the budget (``task="hotpotqa"``: also
    HotpotQA's answer EM and F1); ``context_order``: "input" (document order) or "ranked" (best first).
    Returns all records of ``items``."""
    from tqdm.auto import tqdm

    specs = [(s, *parse_selector(s, budget)) for s in selectors]
    path = Path(jsonl)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(path)
    groups: dict[str, list[QAItem]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    with open(path, "a", encoding="utf-8") as f, file_lock(f):  # end a line cut by an interrupted run
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            f.write("\n")
    def missing(it: QAItem) -> list[tuple[str, str, int]]:
        have = done[it.id]["selectors"] if it.id in done else {}
        return [spec for spec in specs if spec[0] not in have]

    _check_setup(path, done, items, generator.name, setup)
    with open(path, "a", encoding="utf-8") as out, \
            tqdm(total=len(items), desc=f"qa {task} {generator.name}", unit="question",
                 disable=not show_progress, initial=sum(not missing(it) for it in items)) as bar:
        for its in groups.values():
            todo = [it for it in its if missing(it)]
            if not todo:
                continue
            state = GroupState()
            questions = [it.question for it in todo]
            need_full = [it for it in todo if any(name == "full" for _, name, _ in missing(it))]
            full = _full_context(need_full, generator) if need_full else {}
            for it in todo:
                rec = _answer_item(it, missing(it), generator, scorers, state, questions, full, task,
                                   previous=done.get(it.id), top_k=top_k, context_order=context_order)
                if setup is not None:
                    rec["setup"] = setup
                with file_lock(out):
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    out.flush()
                done[it.id] = rec
                bar.update(1)
    return [done[it.id] for it in items if it.id in done]


def _full_context(items: Sequence[QAItem], generator: Generator) -> dict[str, tuple[str, float]]:
    """Full-context answers: one prefill of the shared document for all the group's questions."""
    doc = items[0].document
    limit = generator.context_window - generator.max_new_tokens - 256
    if generator.count_tokens(doc) > limit:
        ids = generator.tokenizer.encode(doc, add_special_tokens=False)[:limit]
        doc = generator.tokenizer.decode(ids)
        logger.warning("full context cut to %d generator tokens (the generator's context)", limit)
    t = clock()
    if len(items) == 1:
        outs = [generator.answer(doc, items[0].question)]
    else:
        outs = generator.answer_many(doc, [it.question for it in items])
    per = (clock() - t) / len(items)
    return {it.id: (o, per) for it, o in zip(items, outs)}


def _answer_item(it: QAItem, specs: Sequence[tuple[str, str, int]], generator: Generator, scorers: Scorers,
                 state: GroupState, questions: Sequence[str], full: dict[str, tuple[str, float]],
                 task: str, previous: dict[str, Any] | None = None, top_k: int | None = None,
                 context_order: str = "input") -> dict[str, Any]:
    """One question's record: every selector of ``specs`` added to ``previous`` (a record of an earlier
    run, not changed) or to a new record."""
    gold = set(it.gold)
    rec: dict[str, Any] = {"id": it.id, "task": task, "group": it.group, "position": it.position,
                           "question": it.question, "answers": it.answers, "gold": it.gold,
                           "n_chunks": len(it.chunks), "doc_tokens": generator.count_tokens(it.document),
                           "generator": generator.name, "selectors": {}}
    rec.update(it.meta)
    if previous is not None:
        rec["selectors"] = dict(previous["selectors"])
    answered: dict[str, tuple[str, float]] = {}
    wall = time.perf_counter()
    for spec, name, budget in specs:
        if name == "full":
            output, gen_s = full[it.id]
            context = it.document
            row: dict[str, Any] = {"chunks": list(range(len(it.chunks))), "tokens": rec["doc_tokens"],
                                   "select_s": 0.0, "evidence_recall": 1.0}
        else:
            sel, sel_s = select(name, budget, it, scorers, state, questions, generator.count_tokens, top_k=top_k,
                                context_order=context_order)
            context = sel.text()
            picked = sorted({c.index for c in sel})
            row = {"chunks": [c.index for c in sel], "spans": [[c.start, c.end] for c in sel],
                   "tokens": sel.tokens, "select_s": round(sel_s, 3),
                   "evidence_recall": len(gold & set(picked)) / len(gold) if gold else 0.0}
            if context in answered:
                output, gen_s = answered[context]
            else:
                t = clock()
                output = generator.answer(context, it.question)
                gen_s = clock() - t
                answered[context] = (output, gen_s)
        row.update({"answer_in_context": answer_correct(context, it.answers), "output": output,
                    "correct": answer_correct(output, it.answers), "gen_s": round(gen_s, 3)})
        if task == "hotpotqa":  # HotpotQA's official answer metrics (one gold answer)
            from .hotpotqa import answer_scores

            row.update(answer_scores(output, it.answers[0]))
        rec["selectors"][spec] = row
    rec["wall_s"] = round(time.perf_counter() - wall + (previous or {}).get("wall_s", 0.0), 1)
    return rec


# --- summary -----------------------------------------------------------------------------------

def scoring_pass(spec: str) -> str:
    """Which scoring pass a selector reads: selectors that share one (``qrhead``, its order, trim and
    budget variants; ``all-heads`` and ``random-heads``) are each charged the whole pass."""
    name = spec.partition("@")[0]
    if name.startswith("qrhead") and name != "qrhead-gen":
        return "qrhead"
    if name.startswith("qrhead-gen"):
        return "qrhead-gen"
    return "all" if name in ("all-heads", "random-heads") else name


def select_seconds(record: dict[str, Any], spec: str) -> float:
    """A selector's scoring seconds for one question as if it ran alone (a shared pass is timed once, in
    whichever selector ran first)."""
    group = [v["select_s"] for k, v in record["selectors"].items() if scoring_pass(k) == scoring_pass(spec)]
    return float(max(group)) if group else 0.0


def summarize(records: Sequence[dict[str, Any]], selectors: Sequence[str],
              baselines: Sequence[str] = ("full", "bm25")) -> dict[str, Any]:
    from .metrics import paired_bootstrap

    def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        d = paired_bootstrap(a, b)
        return {"mean": d.mean, "low": d.low, "high": d.high, "n": d.n, "significant": d.significant}

    def per_q(spec: str, key: str) -> dict[str, float]:
        return {r["id"]: float(r["selectors"][spec][key]) for r in records if spec in r["selectors"]}

    table: dict[str, Any] = {}
    for spec in selectors:
        acc = per_q(spec, "correct")
        if not acc:
            continue
        rows = [r["selectors"][spec] for r in records if spec in r["selectors"]]
        entry: dict[str, Any] = {
            "n": len(acc), "accuracy": float(np.mean(list(acc.values()))),
            "evidence_recall": float(np.mean([x["evidence_recall"] for x in rows])),
            "answer_in_context": float(np.mean([x["answer_in_context"] for x in rows])),
            "tokens": float(np.mean([x["tokens"] for x in rows])),
            "select_s": float(np.mean([select_seconds(r, spec) for r in records if spec in r["selectors"]])),
            "gen_s": float(np.mean([x["gen_s"] for x in rows])),
            "correct": acc,
        }
        for base in baselines:
            other = per_q(base, "correct")
            if base != spec and other and set(other) & set(acc):
                entry[f"vs_{base}"] = paired(acc, other)
        if all("f1" in x for x in rows):  # hotpotqa: the official answer EM and F1, F1 compared like accuracy
            f1 = per_q(spec, "f1")
            entry.update({"em": float(np.mean([x["em"] for x in rows])), "f1": float(np.mean(list(f1.values()))),
                          "f1_per_question": f1})
            # Why a context answers or not: does it hold every supporting paragraph, and, on the questions
            # where it does, the reader's F1 against the oracle's (the supporting paragraphs alone) on the
            # same questions: below it, the rest of the context misleads the reader.
            both = {r["id"]: r["selectors"][spec]["evidence_recall"] >= 1.0 for r in records
                    if spec in r["selectors"]}
            held = {q: v for q, v in f1.items() if both[q]}
            missed = [v for q, v in f1.items() if not both[q]]
            entry.update({"holds_all_supporting": float(np.mean(list(both.values()))),
                          "f1_where_all_held": float(np.mean(list(held.values()))) if held else None,
                          "f1_where_not": float(np.mean(missed)) if missed else None})
            oracle = {r["id"]: float(r["selectors"]["oracle"]["f1"]) for r in records
                      if r["id"] in held and "f1" in r["selectors"].get("oracle", {})}
            if spec != "oracle" and oracle:
                entry["f1_vs_oracle_where_all_held"] = paired({q: held[q] for q in oracle}, oracle)
            for base in baselines:
                other = {r["id"]: float(r["selectors"][base]["f1"]) for r in records
                         if "f1" in r["selectors"].get(base, {})}
                if base != spec and other and set(other) & set(f1):
                    entry[f"f1_vs_{base}"] = paired(f1, other)
            kinds = sorted({r.get("type") for r in records if r.get("type") and spec in r["selectors"]})
            entry["f1_by_type"] = {k: float(np.mean([r["selectors"][spec]["f1"] for r in records
                                                     if r.get("type") == k and spec in r["selectors"]]))
                                   for k in kinds}
            entry["n_by_type"] = {k: sum(r.get("type") == k and spec in r["selectors"] for r in records)
                                  for k in kinds}
        positions = sorted({r.get("position") for r in records if r.get("position")})
        if positions:
            entry["by_position"] = {p: float(np.mean([r["selectors"][spec]["correct"] for r in records
                                                      if r.get("position") == p and spec in r["selectors"]]))
                                    for p in positions}
        table[spec] = entry
    return table


def markdown_table(summary: dict[str, Any], title: str) -> str:
    positions = sorted({p for e in summary.values() for p in e.get("by_position", {})},
                       key=lambda p: POSITIONS.index(p) if p in POSITIONS else 9)
    hotpot = bool(summary) and all("f1" in e for e in summary.values())
    kinds = sorted({k for e in summary.values() for k in e.get("f1_by_type", {})}) if hotpot else []
    head = ["selector", "n", "accuracy", "vs full", "vs bm25", "evidence recall", "answer in context",
            "context tokens", "select CPU s", "generate CPU s"] + [f"acc. gold {p}" for p in positions]
    if hotpot:
        head += ["EM", "F1", "F1 vs full", "F1 vs bm25"] + [f"F1 {k}" for k in kinds]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, e in summary.items():
        def ci(key: str) -> str:
            d = e.get(key)
            if not d:
                return ""
            star = " *" if d["significant"] else ""
            return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{star}"

        cells = [spec, str(e["n"]), f"{e['accuracy']:.3f}", ci("vs_full"), ci("vs_bm25"),
                 f"{e['evidence_recall']:.2f}", f"{e['answer_in_context']:.2f}", f"{e['tokens']:.0f}",
                 f"{e['select_s']:.1f}", f"{e['gen_s']:.1f}"]
        cells += [f"{e['by_position'].get(p, float('nan')):.2f}" for p in positions] if positions else []
        if hotpot:
            cells += [f"{e['em']:.3f}", f"{e['f1']:.3f}", ci("f1_vs_full"), ci("f1_vs_bm25")]
            cells += [f"{e['f1_by_type'].get(k, float('nan')):.3f}" for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if hotpot:
        lines.append("HotpotQA: EM and F1 are the official answer metrics (hotpot_evaluate_v1.py); accuracy is the "
                     "harness's answer containment; evidence recall is the share of the supporting paragraphs "
                     "in the selected context.")
    lines.append("`*`: the 95% paired bootstrap interval excludes 0. CPU seconds per question at one thread "
                 "(shared work, such as encoding an article once for all its questions, divided among them).")
    return "\n".join(lines) + "\n"


# --- memory ------------------------------------------------------------------------------------

def _proc_status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``), MiB; None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM), MiB; None where /proc is missing."""
    return _proc_status_mb("VmHWM")


def rss_mb() -> float | None:
    """This process's resident memory (VmRSS), MiB; None where /proc is missing."""
    return _proc_status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_probe(loaded: Any, items: Sequence[QAItem], *, smol_model: str | None = None, smol_heads: Any = None,
                 gen_heads: Any = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resident memory and its peak while scoring one long input (``items[0]``'s chunks and question): with
    the generator's own weights, then with a separately loaded small scorer (in this order, in this
    process: the small scorer's weights come on top of the generator's, as in a real pipeline).
    ``loaded``: the generator (``.model``, ``.tokenizer``, ``.name``). Peaks are Linux ``VmHWM`` after a
    reset (``/proc/self/clear_refs``); None where that is not available. ``options``: both scorers'
    scoring options (default: candidates as given)."""
    from .._llm import scorer_from_parts
    from ..engine.scoring import QRHeadScorer

    it = items[0]
    texts = [c.text for c in it.chunks]
    out: dict[str, Any] = {"input_tokens": sum(len(loaded.tokenizer.encode(t)) for t in texts),
                           "chunks": len(texts), "rss_generator_loaded_mb": rss_mb()}
    options = options or {"candidate_order": "as_given", "first_stage": None}
    gen = scorer_from_parts(loaded.model, loaded.tokenizer, gen_heads, model_name=loaded.name, **options)
    for label in ("generator_weights", "separate_small_scorer"):
        if label == "generator_weights":
            scorer = gen
        else:
            before = rss_mb()
            scorer = QRHeadScorer.from_pretrained(smol_model, smol_heads, **options)
            out["rss_small_scorer_weights_mb"] = (rss_mb() or 0.0) - (before or 0.0)
        reset = reset_peak_rss()
        base = rss_mb()
        t, c = time.perf_counter(), clock()
        scorer.rank(it.question, texts)
        peak = peak_rss_mb()
        out[label] = {"wall_s": time.perf_counter() - t, "cpu_s": clock() - c, "rss_before_mb": base,
                      "peak_mb": peak, "peak_over_before_mb": (peak or 0.0) - (base or 0.0) if reset else None,
                      "model": scorer.model_name, "heads": len(scorer.heads)}
    out["rss_end_mb"] = rss_mb()
    return out


# --- command line ------------------------------------------------------------------------------

def add_qa_parser(esub: Any) -> None:
    q = esub.add_parser("qa", help="end to end: select context of long inputs, a generator answers (SQuAD "
                                   "articles, NQ multi-document, HotpotQA)")
    q.add_argument("--task", required=True, choices=["squad", "nq", "hotpotqa"])
    q.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    q.add_argument("--generator", default="qwen2.5-coder-0.5b-instruct", help="generator model")
    q.add_argument("--dtype", default=None, help="generator dtype (default float32 on CPU)")
    q.add_argument("--device", default=None)
    q.add_argument("--framework", choices=["llama-index", "langchain"], default="llama-index",
                   help="whose LLM class generates: LlamaIndex HuggingFaceLLM or LangChain ChatHuggingFace")
    q.add_argument("--selectors", nargs="+", default=list(DEFAULT_SELECTORS),
                   help=f"any of {', '.join(SELECTORS)}; NAME@N for another token budget")
    q.add_argument("--budget", type=int, default=None,
                   help="generator tokens of selected context (default 512; with --k, none unless given)")
    q.add_argument("--k", type=int, default=None,
                   help="at most this many chunks (hotpotqa: paragraphs) per selector, besides the budget; "
                        "handed over in the order --context-order says")
    q.add_argument("--context-order", choices=["input", "ranked"], default="input",
                   help="the order every selector hands its chunks over in: the input's (default) or best first")
    q.add_argument("--limit", type=int, default=None, help="at most this many questions")
    q.add_argument("--articles", type=int, default=12, help="squad: seeded articles")
    q.add_argument("--per-article", type=int, default=5, help="squad: seeded questions per article")
    q.add_argument("--chunk-tokens", type=int, default=128, help="squad: SentenceSplitter chunk size (generator tokens)")
    q.add_argument("--depth", type=int, default=20, help="nq: passages per question (gold + depth-1 distractors)")
    q.add_argument("--skip", type=int, default=1000, help="nq: first question of the seeded order")
    q.add_argument("--hotpotqa-data", default=None,
                   help="hotpotqa: the converted sample (default: ~/.cache/qrhead-integrations/data/"
                        "hotpotqa-hard-100; scripts/convert_hotpotqa_sample.py makes it)")
    q.add_argument("--setting", choices=["distractor", "haystack"], default="distractor",
                   help="hotpotqa: the question's own 10 paragraphs, or those plus 40 of other questions "
                        "(seeded by --seed and the question id)")
    q.add_argument("--haystack-others", type=int, default=40,
                   help="hotpotqa haystack: paragraphs drawn from other questions")
    q.add_argument("--max-new-tokens", type=int, default=32)
    q.add_argument("--scorer-model", default=None, help="the small QRHead scorer (default: embedded SmolLM2)")
    q.add_argument("--scorer-heads", default=None, help="heads of the small scorer (default: registered)")
    q.add_argument("--gen-heads", default=None, help="heads of the generator-weights scorer (default: registered)")
    q.add_argument("--evidence", type=int, default=1, help="qrhead-trim: evidence sentences kept per chunk")
    q.add_argument("--evidence-context", type=int, default=1, help="qrhead-trim: neighbouring sentences kept")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--jsonl", default=None, help="per-question results (default: the user cache); reruns resume")
    q.add_argument("--shard", default=None, metavar="I/N",
                   help="answer only the I-th of N disjoint shards of the questions (whole groups, dealt in turn); "
                        "run the N shards at once (other processes or machines sharing --jsonl): each writes its "
                        "records there, and the shard that finds every question recorded writes --out")
    q.add_argument("--memory-probe", action="store_true",
                   help="only measure memory and time of scoring one input with the generator's weights vs the "
                        "small scorer")
    q.add_argument("--report-only", action="store_true",
                   help="no model: the summary again from the per-question records (--jsonl or the default)")
    q.add_argument("--out", required=True, help="summary JSON (a Markdown table is written beside it)")
    from ..cli_options import add_option_args

    # the QRHead scorers' options (both the small scorer and the generator-weights one), e.g.
    # --max-context-tokens 2048; recorded in every question's setup, so runs with other options never mix
    add_option_args(q)
    q.set_defaults(func=cmd_qa)


def scorer_options(args: Any) -> dict[str, Any]:
    """The scoring options given on the command line; candidates keep the order the task hands over
    (the gold position is the experiment) unless ``--candidate-order`` says otherwise, and a ranking
    fuses only with what a selector passes (``first_stage=None``: "qrhead" is the heads alone,
    "qrhead-bm25" passes BM25's scores) unless ``--first-stage`` says otherwise."""
    from ..cli_options import options_from_args

    return {"candidate_order": "as_given", "first_stage": None, **options_from_args(args)}


def cmd_qa(args: Any) -> int:
    from ..engine.heads import HeadSet
    from ..engine.loading import cache_root, load_model
    from ..engine.scoring import QRHeadScorer
    from .data import shared_data_dir

    slug = Path(args.out).stem
    jsonl = Path(args.jsonl) if args.jsonl else cache_root() / "eval" / "qa" / f"{slug}.jsonl"
    if args.budget is None:  # 512 tokens unless a chunk count alone is asked for
        args.budget = None if args.k is not None else 512
    if args.report_only:
        return _report_only(args, jsonl)
    shard = None
    if args.shard is not None:
        if args.memory_probe:
            raise SystemExit("qrhead: error: --shard splits an answering run; --memory-probe answers nothing")
        try:
            shard = parse_shard(args.shard)
        except ValueError as e:
            raise SystemExit(f"qrhead: error: --shard: {e}") from None
    if args.task == "hotpotqa":
        from .hotpotqa import default_dir

        root = Path(args.hotpotqa_data).expanduser() if args.hotpotqa_data else default_dir()
        if not (root / "answers.jsonl").is_file():
            raise SystemExit(f"qrhead: error: no converted HotpotQA sample in {root}: run "
                             "scripts/convert_hotpotqa_sample.py (or pass --hotpotqa-data)")
    else:
        root = Path(args.data) if args.data else shared_data_dir()
    if root is None or not root.is_dir():
        raise SystemExit("qrhead: error: no data folder: pass --data (the shared data folder)")
    t_load = time.perf_counter()
    loaded = load_model(args.generator, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t_load
    if args.task == "squad":
        items = squad_items(root / "squad-articles", loaded.tokenizer, articles=args.articles,
                            per_article=args.per_article, chunk_tokens=args.chunk_tokens, seed=args.seed)
    elif args.task == "hotpotqa":
        from .hotpotqa import hotpotqa_items

        items = hotpotqa_items(root, setting=args.setting, seed=args.seed, others=args.haystack_others,
                               limit=args.limit)
    else:
        items = nq_items(root / "nq-open-oracle", n=args.limit or 60, depth=args.depth, skip=args.skip,
                         seed=args.seed)
    if args.limit is not None:
        items = items[:args.limit]
    if args.memory_probe:
        report = memory_probe(loaded, items, smol_model=args.scorer_model, smol_heads=args.scorer_heads,
                              gen_heads=args.gen_heads, options=scorer_options(args))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return 0
    generator = Generator(loaded.model, loaded.tokenizer, loaded.name, framework=args.framework,
                          max_new_tokens=args.max_new_tokens)
    names = {parse_selector(s, args.budget)[0] for s in args.selectors}
    scorers = Scorers(evidence=args.evidence, evidence_context=args.evidence_context)
    if names & {"qrhead", "all-heads", "random-heads", "qrhead-rank-order", "qrhead-trim", "qrhead-bm25"}:
        scorers.smol = QRHeadScorer.from_pretrained(args.scorer_model, args.scorer_heads, **scorer_options(args))
        scorers.random_heads = HeadSet.random_heads(scorers.smol.shape, len(scorers.smol.heads), seed=args.seed)
    if "qrhead-gen" in names:
        if args.framework == "langchain":
            from ..langchain.llm import scorer_from_llm
        else:
            from ..llama_index.llm import scorer_from_llm
        scorers.gen = scorer_from_llm(generator.llm, args.gen_heads, model_name=loaded.name,
                                      **scorer_options(args))
    if "dense" in names:
        from .first_stage import DenseRetriever

        scorers.dense = DenseRetriever()
    t0 = time.perf_counter()
    shape = ({"depth": args.depth, "skip": args.skip} if args.task == "nq" else {"chunk_tokens": args.chunk_tokens})
    if args.task == "hotpotqa":
        shape = {"setting": args.setting, "top_k": args.k, "data": _data_digest(root),
                 **({"haystack_others": args.haystack_others} if args.setting == "haystack" else {})}
    elif args.k is not None:
        shape["top_k"] = args.k
    if args.context_order != "input":  # (absent when "input": the setups of runs made before the option)
        shape["context_order"] = args.context_order
    setup = run_setup(scorers, budget=args.budget, task=args.task, seed=args.seed, dtype=str(loaded.model.dtype),
                      framework=args.framework, max_new_tokens=args.max_new_tokens, **shape)
    if not args.jsonl and not read_done(jsonl):
        for other in records_elsewhere(jsonl, setup, loaded.name):
            logger.warning("%s holds answers with this generator and setup; this run (named by --out) starts "
                           "from scratch in %s: pass --jsonl %s to resume those records instead", other, jsonl, other)
    records = run_qa(shard_items(items, *shard) if shard else items, generator, args.selectors, scorers,
                     budget=args.budget, jsonl=jsonl, task=args.task, setup=setup, top_k=args.k,
                     context_order=args.context_order)
    if shard:  # the report needs every shard's records
        recorded = read_done(jsonl)
        _check_setup(jsonl, recorded, items, loaded.name, setup)  # another shard run with other settings
        records = [recorded[it.id] for it in items
                   if it.id in recorded and set(args.selectors) <= set(recorded[it.id]["selectors"])]
        if len(records) < len(items):
            print(f"shard {shard[0]}/{shard[1]} done; {len(records)} of {len(items)} questions recorded in "
                  f"{jsonl}: the shard that finishes last writes {args.out}", file=sys.stderr)
            return 0
    summary = summarize(records, args.selectors)
    report = {
        "task": args.task, "generator": loaded.name, "dtype": str(loaded.model.dtype), "framework": args.framework,
        "budget": args.budget, **({"top_k": args.k} if args.k is not None else {}),
        "selectors": args.selectors, "questions": len(records),
        "groups": len({r["group"] for r in records}),
        "doc_tokens_mean": float(np.mean([r["doc_tokens"] for r in records])) if records else 0.0,
        "chunks_mean": float(np.mean([r["n_chunks"] for r in records])) if records else 0.0,
        "scorer": getattr(scorers.smol, "model_name", None),
        "scorer_heads": str(scorers.smol.heads) if scorers.smol else None,
        "generator_heads": str(scorers.gen.heads) if scorers.gen else None,
        "random_heads": str(scorers.random_heads) if scorers.random_heads else None,
        "settings": {k: v for k, v in vars(args).items() if k != "func"}, "setup": setup,
        "generator_load_s": load_s, "run_s_this_call": time.perf_counter() - t0, "jsonl": str(jsonl),
        "summary": summary,
    }
    _write_report(Path(args.out), report, jsonl)
    return 0


def _data_digest(folder: Path) -> str:
    """A short digest of a converted data folder's answers and queries (records of other data never mix)."""
    h = hashlib.sha1()
    for name in ("queries.jsonl", "answers.jsonl", "qrels/test.tsv"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:12]


def _write_report(out: Path, report: dict[str, Any], jsonl: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    title = (f"{report['task']}: {report['questions']} questions, generator {report['generator']} "
             f"({report['dtype']}), " + (f"budget {report['budget']} tokens" if report["budget"] is not None
                                         else "no token budget"))
    if report.get("top_k") is not None:
        title += f", at most {report['top_k']} chunks"
    setting = (report.get("settings") or {}).get("setting")
    if report["task"] == "hotpotqa" and setting:
        title += f", {setting} setting"
    if (report.get("settings") or {}).get("context_order") == "ranked":
        title += ", chunks best first"
    md = markdown_table(report["summary"], title)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}; per-question results in {jsonl}", file=sys.stderr)


def _report_only(args: Any, jsonl: Path) -> int:
    """The summary again from the per-question records (no model is loaded): every record in ``jsonl``,
    every selector found there (a selector run on fewer questions is summarised over those)."""
    records = list(read_done(jsonl).values())
    if not records:
        raise SystemExit(f"qrhead: error: no per-question records in {jsonl}")
    selectors: list[str] = []
    for r in records:
        selectors += [s for s in r["selectors"] if s not in selectors]
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    report = {
        "task": records[0].get("task") or args.task, "generator": records[0].get("generator"),
        "dtype": previous.get("dtype", "?"), "budget": previous.get("budget", args.budget),
        **{k: v for k, v in previous.items() if k not in ("summary", "questions", "groups", "selectors")},
        "selectors": selectors, "questions": len(records), "groups": len({r["group"] for r in records}),
        "doc_tokens_mean": float(np.mean([r["doc_tokens"] for r in records])),
        "chunks_mean": float(np.mean([r["n_chunks"] for r in records])),
        "summary": summarize(records, selectors),
    }
    # the previous report's key order, so that a regenerated report differs from it only where it changed
    report = {**{k: report[k] for k in previous if k in report}, **report}
    _write_report(out, report, jsonl)
    return 0
