"""The end-to-end QA benchmark (qrhead eval qa) on tiny models: answer matching, the two tasks' items,
generation through the frameworks' LLM classes (and the prefix-reuse path giving the same tokens), a
two-question run with every selector, resuming, the summary and the command line."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_model

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.chunks import locate_chunks
from qrhead_integrations.engine.heads import HeadSet
from qrhead_integrations.eval import qa

pytest.importorskip("llama_index.llms.huggingface")

HEADS = [(1, 0), (2, 1), (3, 3)]


@pytest.fixture(scope="module")
def gen_model(tok):
    return tiny_model("qwen2", tok, seed=1)


@pytest.fixture(scope="module")
def generator(gen_model, tok):
    return qa.Generator(gen_model, tok, "tiny-qwen2", max_new_tokens=4)


def test_normalised_answer_containment():
    assert qa.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert qa.answer_correct("It was built by John Smeaton.", ["John Smeaton"])
    assert qa.answer_correct("the Denver Broncos", ["Denver Broncos", "Broncos"])
    assert not qa.answer_correct("Robert Stevenson", ["John Smeaton", "Smeaton"])
    assert not qa.answer_correct("1990s", ["1990"])  # whole words, not substrings of words
    assert not qa.answer_correct("anything", ["", "  "])


def _items() -> list[qa.QAItem]:
    texts = ["The lighthouse on the rock was built by John Smeaton in 1759. It stood for over a century.",
             "Mount Everest is 8,849 metres high. It lies in the Himalaya.",
             "The pancreas makes insulin. Insulin lowers blood sugar. Glucagon raises it.",
             "Paris is the capital of France. The Seine flows through it."]
    doc = "\n\n".join(texts)
    chunks = locate_chunks(doc, texts, source_id="doc")
    return [qa.QAItem("q1", "Who built the lighthouse on the rock?", ["John Smeaton"], "doc", doc, chunks, [0]),
            qa.QAItem("q2", "Which organ makes insulin?", ["pancreas"], "doc", doc, chunks, [2])]


def test_prefix_reuse_gives_the_frameworks_answers(generator, gen_model, tok):
    """answer_many (one prefill of the shared context) gives what HuggingFaceLLM gives question by question,
    and LangChain's ChatHuggingFace over HuggingFacePipeline gives the same answers."""
    pytest.importorskip("langchain_huggingface")
    items = _items()
    context = items[0].document
    questions = [it.question for it in items]
    many = generator.answer_many(context, questions)
    one = [generator.answer(context, q) for q in questions]
    assert many == one and all(isinstance(a, str) for a in many)
    lc = qa.Generator(gen_model, tok, "tiny-qwen2", framework="langchain", max_new_tokens=4)
    assert [lc.answer(context, q) for q in questions] == one


@pytest.fixture(scope="module")
def scorers(tok):
    smol = QRHeadScorer.from_model(tiny_model("llama", tok), tok, heads=HEADS, candidate_order="as_given")
    gen = QRHeadScorer.from_model(tiny_model("qwen2", tok, seed=1), tok, heads=HEADS, candidate_order="as_given")

    class Dense:  # a stand-in for MiniLM: bag of words
        def encode(self, texts):
            import numpy as np

            vocab = sorted({w for t in texts + ["who built which organ makes"] for w in t.lower().split()})
            return np.array([[t.lower().split().count(w) for w in vocab] for t in texts], dtype=float)

    return qa.Scorers(smol=smol, gen=gen, random_heads=HeadSet.random_heads(smol.shape, 3, seed=0), dense=None)


def test_two_question_run_with_every_selector_resumes(generator, scorers, tmp_path, monkeypatch):
    items = _items()
    selectors = ["full", "oracle", "bm25", "qrhead", "qrhead-gen", "all-heads", "random-heads",
                 "qrhead-rank-order", "qrhead-trim", "qrhead-trim@20"]
    jsonl = tmp_path / "qa.jsonl"
    records = qa.run_qa(items, generator, selectors, scorers, budget=40, jsonl=jsonl, show_progress=False)
    assert [r["id"] for r in records] == ["q1", "q2"]
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 2
    for rec, item in zip(records, items):
        assert set(rec["selectors"]) == set(selectors)
        full = rec["selectors"]["full"]
        assert full["tokens"] == generator.count_tokens(item.document) and full["evidence_recall"] == 1.0
        oracle = rec["selectors"]["oracle"]
        assert oracle["chunks"] == item.gold and oracle["evidence_recall"] == 1.0 and oracle["answer_in_context"]
        for spec, row in rec["selectors"].items():
            if spec == "full":
                continue
            budget = 20 if spec.endswith("@20") else 40
            assert row["tokens"] <= budget, spec
            for a, b in row["spans"]:  # exact offsets into the document
                assert 0 <= a < b <= len(item.document)
            if spec != "qrhead-rank-order":
                assert row["spans"] == sorted(row["spans"]), spec  # document order
            assert isinstance(row["output"], str) and isinstance(row["correct"], bool)
        # the rank-order variant hands over the same chunks as qrhead, best first
        assert sorted(rec["selectors"]["qrhead-rank-order"]["chunks"]) == sorted(rec["selectors"]["qrhead"]["chunks"])
    # resume: nothing is generated again
    monkeypatch.setattr(qa.Generator, "answer", lambda *a, **k: pytest.fail("answered again"))
    monkeypatch.setattr(qa.Generator, "answer_many", lambda *a, **k: pytest.fail("answered again"))
    again = qa.run_qa(items, generator, selectors, scorers, budget=40, jsonl=jsonl, show_progress=False)
    assert again == records
    summary = qa.summarize(records, selectors)
    assert summary["qrhead"]["n"] == 2 and "vs_full" in summary["qrhead"] and "vs_bm25" in summary["qrhead"]
    assert "vs_full" not in summary["full"]
    md = qa.markdown_table(summary, "tiny")
    assert "| qrhead-trim@20 | 2 |" in md


def test_a_selector_joins_a_finished_run(generator, scorers, tmp_path, monkeypatch):
    """A rerun with one more selector answers that selector only; the earlier answers stay as they were."""
    items = _items()
    jsonl = tmp_path / "qa.jsonl"
    first = qa.run_qa(items, generator, ["full", "bm25"], scorers, budget=40, jsonl=jsonl, show_progress=False)
    monkeypatch.setattr(qa.Generator, "answer_many", lambda *a, **k: pytest.fail("full context answered again"))
    asked = []
    real = qa.Generator.answer
    monkeypatch.setattr(qa.Generator, "answer", lambda self, c, q: asked.append(q) or real(self, c, q))
    more = qa.run_qa(items, generator, ["full", "bm25", "qrhead"], scorers, budget=40, jsonl=jsonl,
                     show_progress=False)
    assert len(asked) == len(items)  # one new answer per question: qrhead's
    for old, new in zip(first, more):
        assert set(new["selectors"]) == {"full", "bm25", "qrhead"}
        assert {k: new["selectors"][k] for k in ("full", "bm25")} == old["selectors"]
    assert set(old["selectors"]) == {"full", "bm25"}  # the earlier record is not changed in place
    assert len(jsonl.read_text().splitlines()) == 4 and list(qa.read_done(jsonl).values()) == more
    other = qa.Generator(generator.model, generator.tokenizer, "another-generator", max_new_tokens=4)
    with pytest.raises(ValueError, match="holds answers of tiny-qwen2"):
        qa.run_qa(items, other, ["dense"], scorers, budget=40, jsonl=jsonl, show_progress=False)


def test_a_rerun_with_another_setup_is_refused(generator, scorers, tmp_path):
    """Records carry their setup: resuming them with another budget or another head set is an error, not
    a silent reuse of the other setup's answers; the same setup resumes."""
    items = _items()
    jsonl = tmp_path / "qa.jsonl"
    setup = qa.run_setup(scorers, budget=40, task="nq", depth=4)
    first = qa.run_qa(items, generator, ["bm25"], scorers, budget=40, jsonl=jsonl, show_progress=False, setup=setup)
    assert all(r["setup"] == setup for r in first)
    again = qa.run_qa(items, generator, ["bm25"], scorers, budget=40, jsonl=jsonl, show_progress=False,
                      setup=qa.run_setup(scorers, budget=40, task="nq", depth=4))
    assert again == first
    with pytest.raises(ValueError, match=r"another setup \(budget=40 there, 30 now\)"):
        qa.run_qa(items, generator, ["bm25"], scorers, budget=30, jsonl=jsonl, show_progress=False,
                  setup=qa.run_setup(scorers, budget=30, task="nq", depth=4))
    with pytest.raises(ValueError, match="depth=4 there, 8 now"):
        qa.run_qa(items, generator, ["bm25"], scorers, budget=40, jsonl=jsonl, show_progress=False,
                  setup=qa.run_setup(scorers, budget=40, task="nq", depth=8))
    fewer = qa.Scorers(smol=scorers.smol.with_options(heads=scorers.smol.heads.top(1)))
    with pytest.raises(ValueError, match="scorer="):
        qa.run_qa(items, generator, ["bm25"], fewer, budget=40, jsonl=jsonl, show_progress=False,
                  setup=qa.run_setup(fewer, budget=40, task="nq", depth=4))
    assert qa.read_done(jsonl) == {r["id"]: r for r in first}  # nothing was written by the refused runs


def test_records_of_the_same_setup_under_another_name_are_found(generator, scorers, tmp_path):
    """A run named by another --out starts from scratch; the files holding this setup's records are found
    (so the command can say which --jsonl would resume them), and only those."""
    items = _items()
    setup = qa.run_setup(scorers, budget=40, task="nq", depth=4)
    qa.run_qa(items, generator, ["bm25"], scorers, budget=40, jsonl=tmp_path / "first.jsonl",
              show_progress=False, setup=setup)
    qa.run_qa(items, generator, ["bm25"], scorers, budget=30, jsonl=tmp_path / "other-budget.jsonl",
              show_progress=False, setup=qa.run_setup(scorers, budget=30, task="nq", depth=4))
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    again = tmp_path / "second.jsonl"
    assert qa.records_elsewhere(again, setup, generator.name) == [tmp_path / "first.jsonl"]
    assert qa.records_elsewhere(tmp_path / "first.jsonl", setup, generator.name) == []  # not itself
    assert qa.records_elsewhere(again, setup, "another-generator") == []
    assert qa.records_elsewhere(tmp_path / "absent" / "x.jsonl", setup, generator.name) == []


def test_qrhead_bm25_fuses_the_chunks_bm25_scores(generator, scorers, tmp_path):
    """``qrhead-bm25`` ranks with the library's first-stage fusion: all weight on the first stage gives
    BM25's choice, and its ranking is the scorer's own fused ranking of the chunks."""
    items = _items()[:1]
    it = items[0]
    texts = [c.text for c in it.chunks]
    bm25 = qa._bm25_scores(it, qa.GroupState(), texts)
    smol = scorers.smol.with_options(fusion="linear", fusion_weight=0.0)
    only_bm25 = qa.Scorers(smol=smol)
    rec = qa.run_qa(items, generator, ["bm25", "qrhead-bm25"], only_bm25, budget=40, jsonl=tmp_path / "a.jsonl",
                    show_progress=False)[0]
    assert rec["selectors"]["qrhead-bm25"]["chunks"] == rec["selectors"]["bm25"]["chunks"]
    fused = scorers.smol.with_options(fusion="linear", fusion_weight=0.5)
    ranked, _ = qa.source_ranking("qrhead-bm25", it, qa.Scorers(smol=fused), qa.GroupState(), [it.question])
    expected = fused.rank(it.question, texts, first_stage_scores=bm25)
    assert [r.index for r in ranked] == [r.index for r in expected]
    assert [r.score for r in ranked] == pytest.approx([r.score for r in expected], abs=1e-6)


def test_interrupted_jsonl_line_is_redone(generator, scorers, tmp_path):
    items = _items()[:1]
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text('{"id": "q1", "selec')  # a line cut by a kill
    records = qa.run_qa(items, generator, ["bm25"], scorers, budget=40, jsonl=jsonl, show_progress=False)
    assert records[0]["id"] == "q1" and "bm25" in records[0]["selectors"]
    assert qa.read_done(jsonl) == {"q1": records[0]}  # the new line is a line of its own


def test_unknown_selector_is_an_error():
    with pytest.raises(ValueError, match="unknown selector"):
        qa.parse_selector("qrhead-magic", 512)
    assert qa.parse_selector("qrhead-trim@256", 512) == ("qrhead-trim", 256)


def test_squad_and_nq_items_from_the_shared_data(tok, data_dir):
    if data_dir is None or not (data_dir / "squad-articles").is_dir() or not (data_dir / "nq-open-oracle").is_dir():
        pytest.skip("shared data not available")
    items = qa.squad_items(data_dir / "squad-articles", tok, articles=2, per_article=2, chunk_tokens=128)
    assert len(items) == 4 and len({it.group for it in items}) == 2
    for it in items:
        assert all(it.document[c.start:c.end] == c.text for c in it.chunks)
        assert it.gold and any(qa.answer_correct(it.chunks[g].text, it.answers) for g in it.gold)
    nq = qa.nq_items(data_dir / "nq-open-oracle", n=3, depth=5)
    assert [it.position for it in nq] == ["first", "middle", "last"]
    assert [it.gold for it in nq] == [[0], [2], [4]]
    for it in nq:
        assert len(it.chunks) == 5 and all(it.document[c.start:c.end] == c.text for c in it.chunks)
        # distractors never hold the answer; the gold passage is the question's own
        for c in it.chunks:
            if c.index not in it.gold:
                assert not any(a.lower() in c.text.lower() for a in it.answers)


def test_command_line_run_on_tiny_models(tok, tmp_path, data_dir):
    if data_dir is None or not (data_dir / "nq-open-oracle").is_dir():
        pytest.skip("shared data not available")
    from qrhead_integrations.cli import main

    folder = tmp_path / "tiny"
    tiny_model("qwen2", tok, seed=1).save_pretrained(folder)
    tok.save_pretrained(folder)
    heads = ",".join(f"{l}-{h}" for l, h in HEADS)
    out = tmp_path / "qa-nq.json"
    rc = main(["eval", "qa", "--task", "nq", "--data", str(data_dir), "--generator", str(folder),
               "--scorer-model", str(folder), "--scorer-heads", heads, "--gen-heads", heads, "--limit", "2",
               "--depth", "4", "--max-new-tokens", "2", "--budget", "300", "--jsonl", str(tmp_path / "q.jsonl"),
               "--selectors", "full", "bm25", "qrhead", "qrhead-gen", "qrhead-trim", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["questions"] == 2 and set(report["summary"]) == {"full", "bm25", "qrhead", "qrhead-gen",
                                                                   "qrhead-trim"}
    assert out.with_suffix(".md").is_file()
    # the summary again from the records alone (no model loaded)
    out.unlink()
    assert main(["eval", "qa", "--task", "nq", "--report-only", "--jsonl", str(tmp_path / "q.jsonl"),
                 "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["questions"] == 2 and set(again["summary"]) == set(report["summary"])
    assert again["summary"]["qrhead"]["accuracy"] == report["summary"]["qrhead"]["accuracy"]


def test_command_line_scoring_options_reach_the_scorers_and_the_setup(tok, tmp_path, data_dir, capsys, caplog,
                                                                        monkeypatch):
    """`qrhead eval qa --max-context-tokens N` (any ScoringOptions flag) reaches both QRHead scorers and is
    part of every record's setup: a rerun on the same records with another window is refused by name."""
    if data_dir is None or not (data_dir / "nq-open-oracle").is_dir():
        pytest.skip("shared data not available")
    from qrhead_integrations.cli import build_parser, main

    args = build_parser().parse_args(["eval", "qa", "--task", "nq", "--max-context-tokens", "256", "--out", "x"])
    assert qa.scorer_options(args) == {"candidate_order": "as_given", "first_stage": None, "max_context_tokens": 256}
    args = build_parser().parse_args(["eval", "qa", "--task", "nq", "--order", "both", "--first-stage", "bm25",
                                      "--out", "x"])
    assert qa.scorer_options(args) == {"candidate_order": "both", "first_stage": "bm25"}

    folder = tmp_path / "tiny"
    tiny_model("qwen2", tok, seed=1).save_pretrained(folder)
    tok.save_pretrained(folder)
    heads = ",".join(f"{l}-{h}" for l, h in HEADS)
    jsonl = tmp_path / "q.jsonl"
    common = ["eval", "qa", "--task", "nq", "--data", str(data_dir), "--generator", str(folder),
              "--scorer-model", str(folder), "--scorer-heads", heads, "--gen-heads", heads, "--limit", "1",
              "--depth", "4", "--max-new-tokens", "2", "--budget", "300", "--jsonl", str(jsonl),
              "--selectors", "qrhead", "qrhead-gen", "--out", str(tmp_path / "qa.json")]
    assert main(common + ["--max-context-tokens", "256"]) == 0
    assert main(common + ["--max-context-tokens", "256"]) == 0  # same setup: resumes
    capsys.readouterr()
    assert main(common + ["--max-context-tokens", "512"]) == 2
    err = capsys.readouterr().err
    assert "another setup" in err and "scorer=" in err and "generator_scorer=" in err
    assert len(qa.read_done(jsonl)) == 1

    # the same run named by another --out, its records in the default place: told where the others are
    monkeypatch.setenv("QRHEAD_CACHE", str(tmp_path / "cache"))
    named = [a for a in common if a not in ("--jsonl", str(jsonl))]
    assert main(named + ["--max-context-tokens", "256"]) == 0
    first = tmp_path / "cache" / "eval" / "qa" / "qa.jsonl"
    assert first.is_file()
    renamed = named[:-1] + [str(tmp_path / "renamed.json")]
    with caplog.at_level("WARNING", logger="qrhead_integrations"):
        assert main(renamed + ["--max-context-tokens", "256"]) == 0
    assert any(f"--jsonl {first}" in r.getMessage() for r in caplog.records)


def test_memory_probe_on_tiny_models(tok, tmp_path):
    from types import SimpleNamespace

    folder = tmp_path / "tiny-scorer"
    tiny_model("llama", tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = SimpleNamespace(model=tiny_model("qwen2", tok, seed=1), tokenizer=tok, name="tiny-qwen2")
    report = qa.memory_probe(loaded, _items(), smol_model=str(folder), smol_heads=HEADS, gen_heads=HEADS)
    assert report["chunks"] == 4 and report["input_tokens"] > 0
    for label in ("generator_weights", "separate_small_scorer"):
        assert report[label]["cpu_s"] >= 0 and report[label]["heads"] == 3
    if report["rss_generator_loaded_mb"] is not None:  # Linux
        assert report["generator_weights"]["peak_mb"] >= report["generator_weights"]["rss_before_mb"] > 0
