"""The quality study on tiny data: stored masses, offline scoring equal to the engine's, detection, fusion,
and the report."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import load_tokenizer, tiny_model

pytest.importorskip("ir_measures")
pytest.importorskip("bm25s")

from qrhead_integrations import HeadSet, QRHeadScorer
from qrhead_integrations.eval.masses import shuffle_permutation
from research.collect import MassStore, collect, collect_chunks
from research.sets import load_set
from research.study import (
    DetectSet,
    Variant,
    detect,
    fit_fusion_weight,
    head_rows,
    markdown,
    passage_scores,
    run_study,
)

WORDS = ("river mountain star planet bee honey tower bridge king queen sea ocean desert forest city village "
         "music piano violin poem novel war peace treaty law court heart blood bone sugar salt iron gold").split()


def _text(rng, n=12):
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("shared-data")
    sci = root / "scifact"
    (sci / "qrels").mkdir(parents=True)
    docs = {f"d{i}": {"_id": f"d{i}", "title": f"T{i}", "text": _text(rng)} for i in range(40)}
    (sci / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs.values()))
    queries, qrels = [], {"train": [], "test": []}
    for i in range(10):
        split = "train" if i < 5 else "test"
        qid = f"train-{i}" if split == "train" else str(i)
        gold = f"d{i}"
        queries.append({"_id": qid, "text": " ".join(docs[gold]["text"].split()[:4])})
        qrels[split].append((qid, gold))
    (sci / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    for split, rows in qrels.items():
        (sci / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rows))
    nq = root / "nq-open-oracle"
    nq.mkdir()
    rows = [{"question": f"what about {WORDS[i % len(WORDS)]} {i}", "answers": [f"ans{i}"], "title": f"P{i}",
             "text": _text(rng) + f" ans{i}"} for i in range(30)]
    (nq / "nq-open-oracle.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    squad = root / "squad-articles"
    squad.mkdir()
    articles, questions = [], []
    for a in range(2):
        text = " ".join(_text(rng, 20) for _ in range(8))
        articles.append({"id": f"article-{a}", "title": f"A{a}", "text": text})
        for j in range(2):
            start = text.index(".", 40 * (2 * j + 1)) + 2
            questions.append({"id": f"q{a}{j}", "doc_id": f"article-{a}", "question": " ".join(text[start:].split()[:4]),
                              "answers": [text[start:].split()[0]], "evidence": [[start, start + 30]]})
    (squad / "documents.jsonl").write_text("\n".join(json.dumps(d) for d in articles))
    (squad / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions))
    return root


@pytest.fixture(scope="module")
def scorer():
    tok = load_tokenizer("smollm2")
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads="all", max_passage_tokens=24)


def _store(scorer, tmp, data, order):
    return MassStore(tmp, scorer, {"set": data.name, "depth": len(data.items[0].doc_ids), "order": order, "seed": 0})


@pytest.mark.parametrize("variant", [Variant(), Variant("suffix"), Variant("query", True), Variant("suffix", True)],
                         ids=lambda v: v.label)
def test_offline_scores_equal_the_engine(scorer, data_root, tmp_path, variant):
    """Scoring a head set from the stored masses == the engine scoring with those heads and options."""
    data = load_set("scifact-test", data_root, n=2)
    got = collect(scorer, data.items, order="shuffled", seed=0, store=_store(scorer, tmp_path, data, "shuffled"),
                  show_progress=False)
    heads = ((1, 0), (2, 1), (3, 3), (0, 2))
    engine = scorer.with_options(query_rows=variant.rows, token_filter="2sigma" if variant.token_filter else None)
    for it in data.items:
        perm = shuffle_permutation(it.qid, len(it.doc_ids), 0)
        expected = engine.with_options(heads=heads).score(it.query, [it.passages[i] for i in perm])
        offline = passage_scores(got[it.qid], variant, head_rows(heads, scorer.shape.num_heads))
        np.testing.assert_allclose(offline[perm], expected, atol=2e-4)  # stored tokens are float16


def test_store_resumes_without_recomputing(scorer, data_root, tmp_path, monkeypatch):
    data = load_set("scifact-test", data_root, n=2)
    store = _store(scorer, tmp_path, data, "first_stage")
    first = collect(scorer, data.items, order="first_stage", seed=0, store=store, show_progress=False)
    import research.collect as collect_module

    monkeypatch.setattr(collect_module, "measure", lambda *a, **k: pytest.fail("recomputed a stored query"))
    again = collect(scorer, data.items, order="first_stage", seed=0, store=store, show_progress=False)
    assert all(np.array_equal(first[q].sums, again[q].sums) for q in first)


def test_detection_weights_and_fusion_weight(scorer, data_root, tmp_path):
    data = load_set("scifact-train", data_root, n=5)
    masses = collect(scorer, data.items, order="shuffled", seed=0, store=_store(scorer, tmp_path, data, "shuffled"),
                     show_progress=False)
    ds = DetectSet(data, masses)
    d = detect(scorer.shape, [ds], Variant(), k=4)
    assert len(d.heads) == 4 and d.weights is None and d.info["examples"] == len(ds.golds()[0]) > 0
    fitted = detect(scorer.shape, [ds], Variant(), k=4, fit=True)
    assert fitted.heads.heads == d.heads.heads and fitted.weights.shape == (4,) and (fitted.weights >= 0).all()
    by_ndcg = detect(scorer.shape, [ds], Variant("suffix", True), k=4, criterion="ndcg")
    assert len(by_ndcg.heads) == 4
    w = fit_fusion_weight([ds], lambda m: passage_scores(m, Variant(), head_rows(d.heads.heads, 4)))
    assert 0.0 < w < 1.0


def test_the_whole_study_on_tiny_sets(scorer, data_root, tmp_path):
    plan = {"detect": {"scifact": ("scifact-train", 5, 0), "nq": ("nq", 4, 0)},
            "eval": {"scifact-test": [(3, 0), (2, 3)], "nq": [(3, 10)],
                     "squad": {"questions": 3, "chunk_tokens": 32, "max_passage_tokens": 48}}}
    # SQuAD chunks: each article encoded once for its questions, stored under the scorer's chunk options
    n = collect_chunks(scorer.with_options(max_passage_tokens=48), data_root / "squad-articles", chunk_tokens=32,
                       n_questions=3, cache_root=tmp_path, show_progress=False)
    tokens = tmp_path / "tokens"  # where the CLI keeps the store
    assert n == 3
    for name, n, skip, orders in [("scifact-train", 5, 0, ["shuffled"]), ("nq", 4, 0, ["shuffled"]),
                                  ("scifact-test", 3, 0, ["first_stage", "shuffled"]),
                                  ("scifact-test", 2, 3, ["first_stage"]),  # a second part in one order only
                                  ("nq", 3, 10, ["first_stage", "shuffled"])]:
        data = load_set(name, data_root, n=n, skip=skip)
        for order in orders:
            collect(scorer, data.items, order=order, seed=0, store=_store(scorer, tokens, data, order),
                    show_progress=False)
    before = tmp_path / "before.qrhead.json"
    HeadSet.random_heads(scorer.shape, 3, seed=7).to_json(before)
    report = run_study(scorer, data_root, tokens, plan, random_seeds=2, min_detect=1, heads_dir=tmp_path / "heads",
                       compare_heads={"set before": str(before)}, log=lambda s: None)
    files = sorted((tmp_path / "heads").glob("*.json"))
    assert len(files) == len(report["head_sets"])
    loaded = [HeadSet.from_json(f) for f in files]
    assert all(h.model == scorer.model_name and h.shape == scorer.shape for h in loaded)
    assert any(h.weights is not None for h in loaded)  # the fitted-weight sets keep their weights
    assert any("fitted_fusion_weight" in h.info for h in loaded)
    assert set(report["per_query"]) == {"scifact-test", "nq", "squad"}
    squad = report["per_query"]["squad"]
    assert set(squad) == {"document"} and all(len(v["R@1"]) == 3 for v in squad["document"].values())
    res = report["per_query"]["scifact-test"]
    assert set(res) == {"first_stage", "shuffled"}
    methods = [m for g in report["groups"].values() for m in g]
    assert "BM25" in methods and "random heads" in res["first_stage"] and "random#0" not in res["first_stage"]
    assert "set before" in report["groups"]["baselines"] and "set before" in res["shuffled"]
    # each order on the queries stored for it
    assert all(len(v["nDCG@10"]) == 5 for v in res["first_stage"].values())
    assert all(len(v["nDCG@10"]) == 3 for v in res["shuffled"].values())
    md = markdown(report)
    assert "| method |" in md and "vs BM25" in md
    HeadSet.from_dict({"heads": next(iter(report["head_sets"].values()))["heads"]})  # head sets are reported


def test_study_compare_heads_must_exist(scorer, data_root, tmp_path):
    plan = {"detect": {}, "eval": {}}
    with pytest.raises(FileNotFoundError, match="cannot read"):
        run_study(scorer, data_root, tmp_path, plan, min_detect=1, compare_heads={"x": str(tmp_path / "nope.json")},
                  log=lambda s: None)


def test_study_commands_are_research_entry_points(capsys):
    """`python -m research collect|study|needle` parse; `qrhead eval` no longer has them (product commands only)."""
    from qrhead_integrations.cli import build_parser
    from research.cli import build_parser as research_parser
    from research.cli import cmd_collect, cmd_needle, cmd_study

    research = research_parser()
    assert research.parse_args(["collect", "--set", "nq", "--queries", "4"]).func is cmd_collect
    assert research.parse_args(["study", "--out", "x.json"]).func is cmd_study
    assert research.parse_args(["needle", "--essays", "e", "--out", "x.json"]).func is cmd_needle
    qrhead = build_parser()
    for command in ("collect", "study", "needle"):
        with pytest.raises(SystemExit):
            qrhead.parse_args(["eval", command, "--out", "x.json"])
    assert "invalid choice: 'needle'" in capsys.readouterr().err
    assert qrhead.parse_args(["eval", "chunks", "--data", "d", "--out", "x.json"]).eval_command == "chunks"
