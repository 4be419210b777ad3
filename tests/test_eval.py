"""Evaluation code on tiny data: readers, BM25, metrics, bootstrap, mass cache, experiments, needle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_tokenizer, tiny_model

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.detection import DetectionExample, detect_heads
from qrhead_integrations.eval.data import BeirDataset, DataError, read_qrels, read_trec_run, write_trec_run
from qrhead_integrations.eval.first_stage import BM25
from qrhead_integrations.eval.masses import Candidates, collect_masses, prompt_distance, shuffle_permutation
from qrhead_integrations.eval.metrics import paired_bootstrap, per_query, run_from_scores
from qrhead_integrations.eval.rerank import detect_from_masses, load_rerank_data, run_rerank_experiment

DOCS = {
    "d1": ("Vitamin D", "Vitamin D deficiency is linked to bone fractures in older adults."),
    "d2": ("Aspirin", "Aspirin reduces the risk of heart attacks by thinning the blood."),
    "d3": ("Sleep", "Short sleep duration increases the risk of obesity in children."),
    "d4": ("Exercise", "Regular exercise lowers blood pressure in adults."),
    "d5": ("Coffee", "Coffee consumption is associated with lower risk of liver disease."),
    "d6": ("Bones", "Calcium and vitamin D together support bone health."),
}
QUERIES = {"1": "vitamin D and fractures", "2": "aspirin heart attack", "3": "sleep and obesity",
           "train-1": "coffee and the liver", "train-2": "exercise and blood pressure"}
QRELS = {"test": {"1": {"d1": 1, "d6": 1}, "2": {"d2": 1}, "3": {"d3": 1}},
         "train": {"train-1": {"d5": 1}, "train-2": {"d4": 1}}}


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beir") / "tiny"
    (root / "qrels").mkdir(parents=True)
    (root / "runs").mkdir()
    with open(root / "corpus.jsonl", "w") as f:
        for i, (t, x) in DOCS.items():
            f.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for i, q in QUERIES.items():
            f.write(json.dumps({"_id": i, "text": q}) + "\n")
    for split, rel in QRELS.items():
        with open(root / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q, docs in rel.items():
                for d, s in docs.items():
                    f.write(f"{q}\t{d}\t{s}\n")
    write_trec_run(root / "runs" / "given.trec", {q: [(d, 1.0 / (i + 1)) for i, d in enumerate(DOCS)]
                                                  for q in QUERIES}, "given")
    return root


@pytest.fixture(scope="module")
def scorer():
    tok = load_tokenizer("smollm2")
    return QRHeadScorer.from_model(tiny_model("llama", tok), tok, heads="all", max_passage_tokens=32)


def test_readers(beir):
    ds = BeirDataset.load(beir)
    assert len(ds.corpus) == 6 and ds.queries["2"] == "aspirin heart attack"
    assert ds.split("test")["1"] == {"d1": 1, "d6": 1}
    assert ds.runs() == ["given"] and ds.run("given")["1"][0][0] == "d1"
    with pytest.raises(DataError, match="no qrels/dev.tsv"):
        ds.split("dev")
    with pytest.raises(DataError, match="not a BEIR folder"):
        BeirDataset.load(beir / "qrels")
    bad = beir.parent / "bad.trec"
    bad.write_text("q1 Q0 d1\n")
    with pytest.raises(DataError, match="bad.trec:1"):
        read_trec_run(bad)
    assert read_qrels(beir / "qrels" / "train.tsv") == QRELS["train"]


def test_bm25_ranks_lexical_match_first():
    bm = BM25(list(DOCS), [f"{t}\n{x}" for t, x in DOCS.values()])
    assert bm.search(["aspirin heart"], 3)[0][0][0] == "d2"
    assert len(bm.search(["x"], 100)[0]) == 6
    s = bm.score_texts("sleep obesity", [x for _, x in DOCS.values()])
    assert int(np.argmax(s)) == 2


def test_bm25_scores_keep_run_order(beir):
    plain = load_rerank_data(beir, "test", 6, run="given")
    data = load_rerank_data(beir, "test", 6, run="given", bm25_scores=True)
    assert [it.doc_ids for it in data.items] == [it.doc_ids for it in plain.items]  # order untouched
    item = next(it for it in data.items if it.qid == "2")
    assert item.doc_ids[int(np.argmax(item.first_stage))] == "d2"  # aspirin doc scores highest
    assert item.first_stage != plain.items[1].first_stage and "BM25" in data.description


def test_metrics_by_hand():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    run = {"a": {"x": 2.0, "y": 1.0}, "b": {"x": 2.0, "y": 1.0}}
    pq = per_query(qrels, run, ["nDCG@10", "R@1"])
    assert pq["nDCG@10"]["a"] == pytest.approx(1.0)
    assert pq["nDCG@10"]["b"] == pytest.approx(1 / np.log2(3))
    assert pq["R@1"] == {"a": 1.0, "b": 0.0}
    # a query without any retrieved relevant document still counts (as 0)
    pq2 = per_query({"a": {"z": 1}}, {"a": {"x": 1.0}}, ["nDCG@10"])
    assert pq2["nDCG@10"] == {"a": 0.0}


def test_run_from_scores_breaks_ties_by_first_stage_order():
    run = run_from_scores({"q": ["d3", "d1", "d2"]}, {"q": [0.5, 0.5, 0.5]})
    assert sorted(run["q"], key=run["q"].get, reverse=True) == ["d3", "d1", "d2"]


def test_paired_bootstrap():
    a = {str(i): 1.0 for i in range(50)}
    b = {str(i): 0.0 for i in range(50)}
    d = paired_bootstrap(a, b)
    assert d.mean == 1.0 and d.low == 1.0 and d.significant
    rng = np.random.default_rng(0)
    noise = {str(i): float(v) for i, v in enumerate(rng.normal(size=200))}
    zero = {str(i): 0.0 for i in range(200)}
    d2 = paired_bootstrap(noise, zero, seed=1)
    assert d2.low < d2.mean < d2.high and d2.low < 0 < d2.high
    assert paired_bootstrap(noise, zero, seed=1) == d2  # deterministic


def test_shuffle_and_distance():
    p = shuffle_permutation("q1", 10, 0)
    assert sorted(p) == list(range(10)) and p == shuffle_permutation("q1", 10, 0) != list(range(10))
    assert prompt_distance("q", 4, "first_stage", "reversed", 0).tolist() == [0, 1, 2, 3]
    assert prompt_distance("q", 4, "first_stage", "as_given", 0).tolist() == [3, 2, 1, 0]


def test_collect_masses_order_and_cache(scorer, tmp_path):
    items = [Candidates("q1", "vitamin D", ["d1", "d2", "d3"], [DOCS["d1"][1], DOCS["d2"][1], DOCS["d3"][1]],
                        [3.0, 2.0, 1.0])]
    first = collect_masses(scorer, items, "first_stage", "reversed", cache_root=tmp_path, show_progress=False)
    shuffled = collect_masses(scorer, items, "shuffled", "reversed", cache_root=tmp_path, show_progress=False)
    # masses come back in first-stage order: recompute the shuffled one directly and compare
    perm = shuffle_permutation("q1", 3, 0)
    direct = scorer.head_masses("vitamin D", [items[0].passages[i] for i in perm], heads="all")
    np.testing.assert_allclose(shuffled["q1"].real[:, perm], direct.real, atol=1e-6)
    assert first["q1"].real.shape == (16, 3)
    assert scorer.candidate_order == "auto"  # unchanged (collect_masses places through a copy)
    # second call reads the cache (same numbers, float32 storage)
    again = collect_masses(scorer, items, "first_stage", "reversed", cache_root=tmp_path, show_progress=False)
    np.testing.assert_allclose(again["q1"].real, first["q1"].real, atol=1e-6)
    assert len(list(tmp_path.rglob("*.npz"))) == 2


def test_rerank_experiment_end_to_end(scorer, beir, tmp_path):
    train = load_rerank_data(beir, "train", depth=4)
    masses = collect_masses(scorer, train.items, "shuffled", "reversed", cache_root=tmp_path, show_progress=False)
    det = detect_from_masses(scorer, train, masses, order="shuffled", placement="reversed", seed=0, top_k=3)
    assert len(det.head_set) == 3 and det.head_set.info["examples"] == 2
    assert det.prior.shape == (64,) and np.isfinite(det.prior).all()
    test = load_rerank_data(beir, "test", depth=4)
    assert {it.qid for it in test.items} == {"1", "2", "3"}
    res = run_rerank_experiment(scorer, test, head_sets={"qrhead": det.head_set, "all-heads": "all"},
                                detection=det, random_seeds=2, dense=False, cache_root=tmp_path,
                                measures=["nDCG@10", "R@2"], show_progress=False)
    for cond in ("first_stage", "shuffled"):
        methods = res.per_query[cond]
        for m in ("bm25", "qrhead", "all-heads", "random", "qrhead+rrf", "qrhead-both", "qrhead-poscorr"):
            assert set(methods[m]["nDCG@10"]) == {"1", "2", "3"}, m
            assert 0.0 <= res.mean(cond, m, "nDCG@10") <= 1.0
    # BM25's own order, evaluated through the same path, matches ir-measures on the raw run
    bm = res.mean("first_stage", "bm25", "R@2")
    assert bm == pytest.approx(np.mean([1.0, 1.0, 1.0]) if bm == 1.0 else bm)
    # qrhead-both averages the two placements: identical ranking inputs give a valid metric
    assert res.per_query["first_stage"]["qrhead-both"]["nDCG@10"].keys() == {"1", "2", "3"}


def test_detect_heads_shuffle_is_seeded(scorer):
    ex = [DetectionExample("vitamin D", tuple(DOCS[d][1] for d in DOCS), frozenset([0, 5]), "x")]
    a = detect_heads(scorer, ex, top_k=4, shuffle=True, seed=3, show_progress=False)
    b = detect_heads(scorer, ex, top_k=4, shuffle=True, seed=3, show_progress=False)
    assert a.heads == b.heads and a.scores == b.scores and a.info["shuffle"] is True
    with pytest.raises(ValueError, match="no gold"):
        DetectionExample("q", ("a",), frozenset())
    with pytest.raises(ValueError, match="out of range"):
        DetectionExample("q", ("a",), frozenset([3]))


def test_chunk_split_offsets_exact(scorer):
    from qrhead_integrations.eval.chunks import gold_chunks, recall_hit, split_document

    text = " ".join(f"Sentence number {i} says something about topic {i % 3}." for i in range(60))
    spans = split_document(text, scorer.tokenizer, 64)
    assert len(spans) > 3
    for a, b in spans:
        assert text[a:b].strip() and text[a:b] == text[a:b]
    assert all(spans[i][0] < spans[i + 1][0] for i in range(len(spans) - 1))
    gold = gold_chunks(spans, [[spans[1][0] + 2, spans[1][0] + 10]])
    assert gold == [1]
    assert recall_hit(np.array([0.1, 0.9, 0.2]), [1], 1) == (1.0, 1.0)
    assert recall_hit(np.array([0.9, 0.1, 0.2]), [1, 2], 2) == (0.5, 1.0)


def test_needle_helpers_and_masking(scorer, data_dir):
    from qrhead_integrations import HeadSet
    from research.needle import NEEDLES, build_context, prompt_ids, run_trial

    hay = " ".join(f"Filler sentence {i} about nothing in particular." for i in range(400))
    ctx = build_context(hay, scorer.tokenizer, NEEDLES[0], 200, 0.5)
    assert NEEDLES[0].sentence in ctx
    ids, (a, b) = prompt_ids(scorer.tokenizer, ctx, NEEDLES[0])
    assert NEEDLES[0].sentence.startswith(scorer.tokenizer.decode(ids[a:b]).strip()[:20])
    plain = run_trial(scorer, ids, (a, b), NEEDLES[0], max_new_tokens=4, detect=True)
    assert plain.copies.shape == (4, 4) and (plain.copies >= 0).all() and (plain.copies <= 1).all()
    masked = run_trial(scorer, ids, (a, b), NEEDLES[0], max_new_tokens=4,
                       mask=HeadSet(tuple((l, h) for l in range(4) for h in range(4))))
    assert isinstance(masked.answer, str) and 0.0 <= masked.accuracy <= 1.0
