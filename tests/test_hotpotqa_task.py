"""`qrhead eval qa --task hotpotqa` on synthetic data: the converter (new and old pandas pickles), HotpotQA's
official answer EM / F1, the haystack setting, and a run with tiny random-weight models (library and
command line). No network, no real data."""

from __future__ import annotations

import json
import pickle
import sys
import types

import numpy as np
import pytest

from qrhead_integrations.eval import hotpotqa as hp

HEADS = [(1, 0), (2, 1), (3, 3)]
N_QUESTIONS = 8


def _rows(n: int = N_QUESTIONS) -> list[dict]:
    """Questions in the sample's layout (dicts of numpy arrays); supporting paragraphs 2 and 7; question 1
    shares paragraph title "Shared" with question 0."""
    rows = []
    for i in range(n):
        titles = [f"Title {i}-{j}" for j in range(10)]
        if i in (0, 1):
            titles[4] = "Shared"
        sentences = [np.array([f"Paragraph {j} of question {i} tells about topic{i}x{j}.",
                               f" It says more about thing{i}x{j}."], dtype=object) for j in range(10)]
        sentences[2] = np.array([f"Person{i} was born in City{i}.", f" City{i} lies on River{i}."], dtype=object)
        sentences[7] = np.array([f"River{i} is {i + 100} km long."], dtype=object)
        rows.append({
            "id": f"q{i:02d}", "question": f"How long is the river of the city where Person{i} was born?",
            "answer": f"{i + 100} km", "type": "comparison" if i % 4 == 0 else "bridge", "level": "hard",
            "supporting_facts": {"title": np.array([titles[2], titles[7]], dtype=object),
                                 "sent_id": np.array([1, 0], dtype=np.int32)},
            "context": {"title": np.array(titles, dtype=object), "sentences": np.array(sentences, dtype=object)},
        })
    return rows


def _old_pandas_pickle(df, path) -> None:
    """``df`` pickled the way pandas < 2 did its integer index: by ``pandas.core.indexes.numeric.Int64Index``
    (a module that pandas 2 no longer has, so loading needs the converter's shim)."""
    import pandas as pd

    name = "pandas.core.indexes.numeric"
    assert name not in sys.modules
    fake = types.ModuleType(name)

    def Int64Index(data, dtype=None):  # the old class's name
        raise AssertionError("never called while pickling")

    Int64Index.__module__, Int64Index.__qualname__ = name, "Int64Index"
    fake.Int64Index = Int64Index

    class OldPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if type(obj) is pd.Index and obj.dtype == np.int64:
                return Int64Index, (obj.tolist(),)
            return NotImplemented

    sys.modules[name] = fake
    try:
        with open(path, "wb") as f:
            OldPickler(f, protocol=4).dump(df)
    finally:
        del sys.modules[name]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A converted folder of the synthetic questions (new-format pickle)."""
    pd = pytest.importorskip("pandas")
    joblib = pytest.importorskip("joblib")
    tmp = tmp_path_factory.mktemp("hotpot")
    df = pd.DataFrame(_rows())
    joblib.dump(df, tmp / "sample.joblib")
    out = tmp / "converted"
    hp.convert(hp.load_sample(tmp / "sample.joblib"), out, sha256=hp.sha256_of(tmp / "sample.joblib"))
    return out


@pytest.mark.parametrize("old", [False, True])
def test_converter_writes_the_beir_layout_with_answers(tmp_path, old):
    pd = pytest.importorskip("pandas")
    joblib = pytest.importorskip("joblib")
    df = pd.DataFrame(_rows(3), index=pd.Index([4367, 1867, 3504], dtype="int64"))
    path = tmp_path / "sample.joblib"
    if old:
        _old_pandas_pickle(df, path)
        with pytest.raises(ModuleNotFoundError):  # plain loading fails: the shim is what makes it load
            joblib.load(path)
    else:
        joblib.dump(df, path)
    records = hp.load_sample(path)
    assert "pandas.core.indexes.numeric" not in sys.modules  # the shim is removed again
    assert [r["id"] for r in records] == ["q00", "q01", "q02"]
    out = tmp_path / "out"
    stats = hp.convert(records, out, sha256=hp.sha256_of(path))
    assert stats["questions"] == 3 and stats["paragraphs"] == 30
    assert stats["types"] == {"bridge": 2, "comparison": 1} and stats["sha256"] == hp.sha256_of(path)
    corpus = [json.loads(x) for x in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == 30 and corpus[0]["_id"] == "q00::0" and corpus[0]["title"] == "Title 0-0"
    # sentences joined by single spaces (their leading spaces dropped)
    assert corpus[2]["text"] == "Person0 was born in City0. City0 lies on River0."
    queries = [json.loads(x) for x in (out / "queries.jsonl").read_text().splitlines()]
    assert queries[1] == {"_id": "q01", "text": "How long is the river of the city where Person1 was born?"}
    qrels = (out / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and qrels[1:3] == ["q00\tq00::2\t1", "q00\tq00::7\t1"]
    assert len(qrels) == 7
    run = (out / "runs" / "given.trec").read_text().splitlines()
    assert len(run) == 30 and run[0] == "q00 Q0 q00::0 1 0.0 given"
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert answers[0] == {"id": "q00", "answer": "100 km", "type": "comparison", "level": "hard",
                          "supporting_facts": [["Title 0-2", 1], ["Title 0-7", 0]]}
    readme = (out / "README.md").read_text()
    assert "CC BY-SA 4.0" in readme and hp.sha256_of(path) in readme and "noahshinn/reflexion" in readme
    assert json.loads((out / "source.json").read_text())["sha256"] == hp.sha256_of(path)
    # read back: the reader gives the questions, paragraphs in order, the supporting ones and the answers
    qs = hp.read_hotpotqa(out)
    assert [q.id for q in qs] == ["q00", "q01", "q02"] and qs[2].answer == "102 km"
    assert [p["_id"] for p in qs[0].paragraphs] == [f"q00::{j}" for j in range(10)]
    assert qs[0].supporting == ["q00::2", "q00::7"]


def test_original_json_layout_is_read_too():
    r = hp.normalize_record({"_id": "x", "question": "Q?", "answer": "yes", "type": "comparison", "level": "hard",
                             "supporting_facts": [["A", 0], ["B", 1]],
                             "context": [["A", ["One.", " Two."]], ["B", ["Three."]]]})
    assert r["id"] == "x" and r["supporting_facts"] == [["A", 0], ["B", 1]]
    assert r["context"] == [["A", ["One.", " Two."]], ["B", ["Three."]]]


def test_converter_script_checks_the_sha256(tmp_path):
    pd = pytest.importorskip("pandas")
    joblib = pytest.importorskip("joblib")
    from importlib.util import module_from_spec, spec_from_file_location
    from pathlib import Path

    spec = spec_from_file_location("convert_hotpotqa_sample",
                                   Path(__file__).resolve().parents[1] / "scripts" / "convert_hotpotqa_sample.py")
    script = module_from_spec(spec)
    spec.loader.exec_module(script)
    path = tmp_path / "sample.joblib"
    joblib.dump(pd.DataFrame(_rows(2)), path)
    out = tmp_path / "out"
    assert script.main([str(path), "--out", str(out)]) == 2 and not out.exists()  # not the committed file
    assert script.main([str(path), "--out", str(out), "--allow-other-file"]) == 0
    assert len(hp.read_hotpotqa(out)) == 2
    inside = Path(__file__).resolve().parents[1] / "hotpotqa-data-must-not-be-here"
    assert script.main([str(path), "--out", str(inside), "--allow-other-file"]) == 2 and not inside.exists()


def test_official_em_and_f1():
    assert hp.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert hp.normalize_answer("An apple, a pear") == "apple pear"
    assert hp.exact_match_score("the Denver Broncos", "Denver Broncos")
    assert not hp.exact_match_score("Denver Broncos team", "Denver Broncos")
    assert hp.f1_score("Denver Broncos", "the Denver Broncos") == (1.0, 1.0, 1.0)
    f1, p, r = hp.f1_score("the Denver Broncos team", "Denver Broncos")
    assert (p, r) == pytest.approx((2 / 3, 1.0)) and f1 == pytest.approx(0.8)
    # yes / no / noanswer: no partial credit unless the two are equal
    assert hp.f1_score("yes", "no")[0] == 0.0
    assert hp.f1_score("Yes.", "yes") == (1.0, 1.0, 1.0)
    assert hp.f1_score("no, it is not", "no")[0] == 0.0  # gold is 'no', the prediction is not exactly 'no'
    assert hp.f1_score("yes", "yes it is")[0] == 0.0  # the prediction is 'yes', the gold something else
    assert hp.f1_score("noanswer", "no answer")[0] == 0.0
    assert hp.f1_score("", "Paris")[0] == 0.0 and hp.f1_score("the", "a")[0] == 0.0  # nothing left in common
    assert hp.exact_match_score("the", "a")  # both normalise to ''
    assert hp.f1_score("born 1961 in Paris", "Paris, 1961")[0] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_haystack_is_stable_and_holds_the_own_paragraphs(folder):
    qs = hp.read_hotpotqa(folder)
    for i in (0, 1, 5):
        hay = hp.haystack(qs, i, seed=0)
        assert hay == hp.haystack(qs, i, seed=0)  # deterministic
        assert hay != hp.haystack(qs, i, seed=1)  # the seed matters
        ids = [p["_id"] for p in hay]
        titles = [p["title"] for p in hay]
        assert len(ids) == 50 and len(set(ids)) == 50 and len(set(titles)) == 50  # no duplicates
        own = {p["_id"] for p in qs[i].paragraphs}
        assert own <= set(ids)
        others = [x for x in ids if x not in own]
        assert len(others) == 40 and all(not x.startswith(f"{qs[i].id}::") for x in others)
        assert len({x.split("::")[0] for x in others}) > 1  # drawn from several other questions
        assert ids[:10] != [p["_id"] for p in qs[i].paragraphs]  # shuffled
    # the paragraph titled like one of question 0's is never drawn into it
    assert "q01::4" not in {p["_id"] for p in hp.haystack(qs, 0, seed=0)}
    # the same haystack when only the first questions are asked for (limit), as in every run
    a = hp.hotpotqa_items(folder, setting="haystack", limit=2)
    b = hp.hotpotqa_items(folder, setting="haystack")
    assert [x.meta["paragraph_ids"] for x in a] == [x.meta["paragraph_ids"] for x in b[:2]]
    # fewer others than asked for when the file has too few paragraphs
    assert len(hp.haystack(qs[:3], 0, others=40)) == 10 + 20 - 1  # question 1's 'Shared' is not drawn


def test_items_of_both_settings(folder):
    for setting, n in (("distractor", 10), ("haystack", 50)):
        items = hp.hotpotqa_items(folder, setting=setting)
        assert len(items) == N_QUESTIONS
        for it in items:
            assert len(it.chunks) == n and len(it.gold) == 2 and it.group == it.id
            assert all(it.document[c.start:c.end] == c.text for c in it.chunks)
            assert {it.meta["paragraph_ids"][g] for g in it.gold} == {f"{it.id}::2", f"{it.id}::7"}
            assert it.chunks[it.gold[0]].text.startswith("(Title: ")
            assert it.meta["type"] in ("bridge", "comparison") and it.meta["setting"] == setting
            # the gold paragraph 7 holds the answer ("{i + 100} km"), but only other questions' count
            assert it.meta["answer_elsewhere"] == 0 and any(it.answers[0] in it.chunks[g].text for g in it.gold)
        if setting == "distractor":
            assert items[0].gold == [2, 7]
    with pytest.raises(ValueError, match="setting"):
        hp.hotpotqa_items(folder, setting="open")


def test_answer_held_by_other_questions_paragraphs_is_counted(tmp_path):
    pd = pytest.importorskip("pandas")
    joblib = pytest.importorskip("joblib")
    rows = _rows()
    rows[3]["answer"] = "City1"  # question 1's paragraphs name City1 (its paragraph 2, twice in one paragraph)
    joblib.dump(pd.DataFrame(rows), tmp_path / "s.joblib")
    hp.convert(hp.load_sample(tmp_path / "s.joblib"), tmp_path / "c", sha256=hp.sha256_of(tmp_path / "s.joblib"))
    item = hp.hotpotqa_items(tmp_path / "c", setting="haystack")[3]
    drawn = [i for i in item.meta["paragraph_ids"] if i.startswith("q01::")]
    assert "q01::2" in drawn and item.meta["answer_elsewhere"] == 1  # seed 0 draws it
    assert hp.hotpotqa_items(tmp_path / "c", setting="distractor")[3].meta["answer_elsewhere"] == 0


# --- runs with tiny models -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generator(tok):
    pytest.importorskip("llama_index.llms.huggingface")
    from conftest import tiny_model

    from qrhead_integrations.eval import qa

    return qa.Generator(tiny_model("qwen2", tok, seed=1), tok, "tiny-qwen2", max_new_tokens=4)


def test_run_with_top_k_paragraphs(folder, generator, tok, tmp_path):
    from conftest import tiny_model

    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.eval import qa

    smol = QRHeadScorer.from_model(tiny_model("llama", tok), tok, heads=HEADS, candidate_order="as_given",
                                   first_stage=None)
    scorers = qa.Scorers(smol=smol, gen=smol)
    items = hp.hotpotqa_items(folder, setting="haystack", limit=2)
    selectors = ["full", "oracle", "bm25", "qrhead", "qrhead-bm25", "qrhead-gen"]
    records = qa.run_qa(items, generator, selectors, scorers, budget=None, top_k=2, jsonl=tmp_path / "h.jsonl",
                        show_progress=False, task="hotpotqa")
    assert len(records) == 2
    for rec, it in zip(records, items):
        assert rec["type"] == it.meta["type"] and rec["setting"] == "haystack" and rec["n_chunks"] == 50
        for spec, row in rec["selectors"].items():
            assert 0.0 <= row["f1"] <= 1.0 and row["em"] in (0.0, 1.0)
            assert row["f1"] == pytest.approx(hp.f1_score(row["output"], it.answers[0])[0], abs=1e-4)
            if spec == "full":
                continue
            assert len(row["chunks"]) == 2 and row["chunks"] == sorted(row["chunks"])  # top 2, input order
        assert rec["selectors"]["oracle"]["chunks"] == it.gold and rec["selectors"]["oracle"]["evidence_recall"] == 1
        assert rec["selectors"]["oracle"]["answer_in_context"]
    summary = qa.summarize(records, selectors)
    assert {"em", "f1", "f1_by_type", "f1_vs_full", "f1_vs_bm25"} <= set(summary["qrhead"])
    assert "f1_vs_full" not in summary["full"]
    md = qa.markdown_table(summary, "tiny hotpotqa")
    assert "| EM | F1 |" in md and "supporting paragraphs" in md
    # a token budget alone, as for the other tasks: the oracle's two paragraphs fit 300 tokens
    rec = qa.run_qa(items[:1], generator, ["oracle", "bm25"], scorers, budget=300, jsonl=tmp_path / "b.jsonl",
                    show_progress=False, task="hotpotqa")[0]
    assert rec["selectors"]["oracle"]["tokens"] <= 300 and rec["selectors"]["bm25"]["tokens"] <= 300
    assert rec["selectors"]["oracle"]["chunks"] == items[0].gold


def test_summary_says_whether_contexts_hold_both_supporting_paragraphs_and_what_that_is_worth():
    """Per selector: the share of questions whose context holds every supporting paragraph, and on those
    questions the reader's F1 against the oracle's on the same questions (paired); none for the oracle."""
    from qrhead_integrations.eval import qa

    def row(ev: float, f1: float) -> dict:
        return {"evidence_recall": ev, "f1": f1, "em": float(f1 == 1.0), "correct": f1 == 1.0,
                "answer_in_context": True, "tokens": 10, "gen_s": 1.0, "select_s": 0.0}

    # (bm25 evidence, bm25 F1, oracle F1) per question
    cases = [(1.0, 0.2, 1.0), (1.0, 0.5, 0.5), (0.5, 0.0, 1.0), (1.0, 1.0, 0.0)]
    records = [{"id": f"q{i}", "group": f"q{i}", "type": "bridge", "selectors": {
        "oracle": row(1.0, o), "bm25": row(ev, f1), "full": row(1.0, 0.4)}} for i, (ev, f1, o) in enumerate(cases)]
    summ = qa.summarize(records, ["full", "oracle", "bm25"])
    bm25 = summ["bm25"]
    assert bm25["holds_all_supporting"] == pytest.approx(0.75)
    assert bm25["f1_where_all_held"] == pytest.approx((0.2 + 0.5 + 1.0) / 3)
    assert bm25["f1_where_not"] == pytest.approx(0.0)
    d = bm25["f1_vs_oracle_where_all_held"]
    assert d["n"] == 3 and d["mean"] == pytest.approx((0.2 + 0.5 + 1.0) / 3 - (1.0 + 0.5 + 0.0) / 3)
    assert d["low"] <= d["mean"] <= d["high"]
    assert summ["full"]["f1_vs_oracle_where_all_held"]["n"] == 4 and summ["full"]["f1_where_not"] is None
    assert "f1_vs_oracle_where_all_held" not in summ["oracle"]
    # without an oracle run: the shares, no comparison
    alone = qa.summarize([{**r, "selectors": {"bm25": r["selectors"]["bm25"]}} for r in records], ["bm25"])
    assert alone["bm25"]["holds_all_supporting"] == pytest.approx(0.75)
    assert "f1_vs_oracle_where_all_held" not in alone["bm25"]


def test_command_line_run(folder, tok, tmp_path):
    pytest.importorskip("llama_index.llms.huggingface")
    from conftest import tiny_model

    from qrhead_integrations.cli import main

    model = tmp_path / "tiny"
    tiny_model("qwen2", tok, seed=1).save_pretrained(model)
    tok.save_pretrained(model)
    heads = ",".join(f"{l}-{h}" for l, h in HEADS)
    out = tmp_path / "qa-hotpot.json"
    jsonl = tmp_path / "q.jsonl"
    args = ["eval", "qa", "--task", "hotpotqa", "--hotpotqa-data", str(folder), "--generator", str(model),
            "--scorer-model", str(model), "--scorer-heads", heads, "--gen-heads", heads, "--limit", "2",
            "--max-new-tokens", "2", "--k", "2", "--jsonl", str(jsonl), "--out", str(out),
            "--selectors", "full", "oracle", "bm25", "qrhead", "qrhead-gen"]
    assert main(args + ["--setting", "distractor"]) == 0
    report = json.loads(out.read_text())
    assert report["questions"] == 2 and report["budget"] is None and report["top_k"] == 2
    assert report["setup"]["setting"] == "distractor" and report["setup"]["top_k"] == 2
    assert report["summary"]["oracle"]["evidence_recall"] == 1.0 and "f1" in report["summary"]["bm25"]
    assert "at most 2 chunks, distractor setting" in out.with_suffix(".md").read_text()
    # another setting never resumes these records
    assert main(args + ["--setting", "haystack"]) == 2
    # the summary again from the records alone: over the run's own report, the same file byte for byte
    written = out.read_text()
    assert main(["eval", "qa", "--task", "hotpotqa", "--report-only", "--jsonl", str(jsonl), "--out", str(out)]) == 0
    assert out.read_text() == written
    out.unlink()
    assert main(["eval", "qa", "--task", "hotpotqa", "--report-only", "--jsonl", str(jsonl), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["summary"]["bm25"]["f1"] == report["summary"]["bm25"]["f1"]
    # no converted data: a clear error
    with pytest.raises(SystemExit, match="convert_hotpotqa_sample"):
        main(["eval", "qa", "--task", "hotpotqa", "--hotpotqa-data", str(tmp_path / "none"), "--out", str(out)])


def test_shards_are_disjoint_whole_groups(folder):
    from qrhead_integrations.eval import qa

    assert qa.parse_shard("1/2") == (1, 2) and qa.parse_shard("3/3") == (3, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="I/N"):
            qa.parse_shard(bad)
    items = hp.hotpotqa_items(folder, setting="distractor")
    for n in (1, 2, 3):
        shards = [qa.shard_items(items, i, n) for i in range(1, n + 1)]
        ids = [it.id for s in shards for it in s]
        assert sorted(ids) == sorted(it.id for it in items) and len(set(ids)) == len(ids)
    # questions sharing a group (one document) stay in one shard
    grouped = [qa.QAItem(f"x{i}", "q?", ["a"], f"g{i // 2}", "d", [], []) for i in range(6)]
    assert [it.id for it in qa.shard_items(grouped, 2, 2)] == ["x2", "x3"]


def test_two_shards_writing_one_file_at_once_give_the_unsharded_run(folder, generator, tok, tmp_path):
    """Two shards answering at once (threads; each opens the file itself, as two processes would) write
    whole lines only, and together hold the records one unsharded run writes."""
    import threading

    from conftest import tiny_model

    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.eval import qa

    smol = QRHeadScorer.from_model(tiny_model("llama", tok), tok, heads=HEADS, candidate_order="as_given",
                                   first_stage=None)
    scorers = qa.Scorers(smol=smol)
    items = hp.hotpotqa_items(folder, setting="distractor", limit=4)
    selectors = ["oracle", "bm25", "qrhead", "qrhead-bm25"]
    kw = dict(budget=None, top_k=2, show_progress=False, task="hotpotqa")
    whole = qa.run_qa(items, generator, selectors, scorers, jsonl=tmp_path / "whole.jsonl", **kw)
    shared = tmp_path / "shared.jsonl"
    errors: list[BaseException] = []

    def shard(i: int) -> None:
        try:
            qa.run_qa(qa.shard_items(items, i, 2), generator, selectors, scorers, jsonl=shared, **kw)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=shard, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lines = shared.read_text().splitlines()
    assert len(lines) == len(items) and all(json.loads(line) for line in lines)
    done = qa.read_done(shared)

    def answers(rec):
        return {s: (row["chunks"], row["output"], row["f1"]) for s, row in rec["selectors"].items()}

    assert {r["id"]: answers(r) for r in whole} == {i: answers(r) for i, r in done.items()}


def test_command_line_shards(folder, tok, tmp_path):
    """``--shard 1/2`` then ``--shard 2/2`` on one records file: the first writes no summary, the second
    (finding every question recorded) writes it over all questions; a bad shard is a clear error."""
    pytest.importorskip("llama_index.llms.huggingface")
    from conftest import tiny_model

    from qrhead_integrations.cli import main

    model = tmp_path / "tiny"
    tiny_model("qwen2", tok, seed=1).save_pretrained(model)
    tok.save_pretrained(model)
    heads = ",".join(f"{l}-{h}" for l, h in HEADS)
    out, jsonl = tmp_path / "qa.json", tmp_path / "q.jsonl"
    args = ["eval", "qa", "--task", "hotpotqa", "--hotpotqa-data", str(folder), "--generator", str(model),
            "--scorer-model", str(model), "--scorer-heads", heads, "--limit", "3", "--max-new-tokens", "2",
            "--k", "2", "--jsonl", str(jsonl), "--out", str(out), "--selectors", "oracle", "bm25", "qrhead"]
    ranked_out = tmp_path / "ranked.json"
    assert main(args[:-8] + ["--jsonl", str(tmp_path / "r.jsonl"), "--out", str(ranked_out), "--selectors", "bm25",
                             "--context-order", "ranked"]) == 0
    assert json.loads(ranked_out.read_text())["setup"]["context_order"] == "ranked"
    assert "chunks best first" in ranked_out.with_suffix(".md").read_text()
    assert main(args + ["--shard", "1/2"]) == 0
    assert not out.exists() and len(jsonl.read_text().splitlines()) == 2  # questions 1 and 3
    assert main(args + ["--shard", "2/2"]) == 0
    report = json.loads(out.read_text())
    assert report["questions"] == 3 and report["summary"]["oracle"]["evidence_recall"] == 1.0
    with pytest.raises(SystemExit, match="I/N"):
        main(args + ["--shard", "2/1"])


def test_context_order_ranked_hands_every_selector_s_chunks_over_best_first(folder, generator, tok, tmp_path):
    from conftest import tiny_model

    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.eval import qa
    from qrhead_integrations.eval.first_stage import BM25

    smol = QRHeadScorer.from_model(tiny_model("llama", tok), tok, heads=HEADS, candidate_order="as_given",
                                   first_stage=None)
    scorers = qa.Scorers(smol=smol)
    items = hp.hotpotqa_items(folder, setting="haystack", limit=2)
    selectors = ["oracle", "bm25", "qrhead-bm25"]
    kw = dict(budget=None, top_k=3, show_progress=False, task="hotpotqa")
    as_input = qa.run_qa(items, generator, selectors, scorers, jsonl=tmp_path / "i.jsonl", **kw)
    best_first = qa.run_qa(items, generator, selectors, scorers, jsonl=tmp_path / "r.jsonl",
                           context_order="ranked", **kw)
    moved = 0
    for a, b, it in zip(as_input, best_first, items):
        for spec in selectors:
            ca, cb = a["selectors"][spec]["chunks"], b["selectors"][spec]["chunks"]
            assert ca == sorted(ca) and sorted(cb) == ca  # the same chunks, another order
            moved += cb != ca
        texts = [c.text for c in it.chunks]
        bm25 = qa.ranking(BM25.over(texts).scores(it.question), texts)
        assert b["selectors"]["bm25"]["chunks"] == [r.index for r in bm25[:3]]  # best first
    assert moved  # some selection's order did change
