"""scripts/hotpotqa_reader_rule.py decides a documented recommendation (k and context order for multi-hop
use) from reader answers on dev, so its candidates, its rule and its bookkeeping are tested on synthetic
records, and scripts/hotpotqa_dev_answers.py's checks on a synthetic shared folder."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def script(tmp_path, monkeypatch):
    module = _load("hotpotqa_reader_rule")
    monkeypatch.setattr(module, "OUT", tmp_path / "hotpotqa-reader")
    # synthetic questions q0..q99: supporting paragraphs 0 and 1
    monkeypatch.setattr(module, "stored_rankings", lambda: {(s, f"q{i}"): {"gold": [0, 1]}
                                                            for s in ("distractor", "haystack") for i in range(100)})
    return module


def test_candidates_hold_the_current_setting_first(script):
    assert script.candidates("distractor")[:2] == ["k=7,input", "k=7,ranked"]
    assert script.candidates("haystack")[0] == "k=8,input"
    assert len(script.candidates("haystack")) == 8
    assert {script.parse_cell(c) for c in script.candidates("distractor")} == \
        {(k, o) for k in (2, 3, 4, 7) for o in ("input", "ranked")}


def _f1(setting: str, shift: dict[str, float], n: int = 100) -> dict[str, dict[str, float]]:
    """Per-question F1: 0.3 or 0.2 alternating, plus a candidate's shift."""
    return {c: {f"q{i}": (0.3 if i % 2 else 0.2) + shift.get(c, 0.0) for i in range(n)}
            for c in script_candidates(setting)}


def script_candidates(setting: str) -> list[str]:
    return _load("hotpotqa_reader_rule").candidates(setting)


def test_a_clear_gain_is_recommended(script):
    f1 = _f1("distractor", {"k=3,ranked": 0.1})
    res = script.decide(f1, "distractor")
    assert res["best"] == "k=3,ranked" and res["recommended"] == "k=3,ranked"
    assert res["best minus current"]["low"] > 0


def test_ties_go_to_the_larger_k_then_input_and_a_gain_inside_the_noise_is_not_recommended(script):
    # every candidate the same: the current setting
    assert script.decide(_f1("haystack", {}), "haystack")["best"] == "k=8,input"
    # k=3 input and ranked within 0.005 of the best k=2: k=3 (larger), input
    res = script.decide(_f1("haystack", {"k=2,input": 0.034, "k=3,input": 0.031, "k=3,ranked": 0.031,
                                         "k=4,input": 0.02}), "haystack")
    assert res["best"] == "k=3,input"
    # a gain on half the questions, a loss on the other half: not recommended
    f1 = _f1("distractor", {})
    f1["k=2,input"] = {q: v + (0.5 if i % 2 else -0.45) for i, (q, v) in enumerate(f1["k=7,input"].items())}
    res = script.decide(f1, "distractor")
    assert res["best"] == "k=2,input" and res["recommended"] is None
    assert res["best minus current"]["low"] < 0 < res["best minus current"]["high"]


def _records(script, reader: str, cells_f1: dict[str, float], n: int, setting: str = "distractor") -> list[dict]:
    """Odd questions: both supporting paragraphs in the context and +0.1 F1."""
    return [{"setting": setting, "qid": f"q{i}", "reader": reader,
             "cells": {c: {"f1": v + (0.1 if i % 2 else 0.0), "chunks": [1, 0] if i % 2 else [0, 5]}
                       for c, v in cells_f1.items()}} for i in range(n)]


def test_choose_needs_every_question_and_checks_the_larger_reader(script, capsys):
    small = {c: 0.2 for c in script.candidates("distractor")} | {"k=3,ranked": 0.4}
    hay = {c: 0.2 for c in script.candidates("haystack")}
    path = script.OUT.with_suffix(".dev.jsonl")
    lines = _records(script, "0.5b", small, 100) + _records(script, "0.5b", hay, 99, "haystack")
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(SystemExit, match="99 of 100"):
        script.cmd_choose(argparse.Namespace(partial=False))
    with path.open("a") as f:
        for r in _records(script, "0.5b", hay, 100, "haystack")[99:]:
            f.write(json.dumps(r) + "\n")
        f.write('{"cut')  # an interrupted line is ignored
    script.cmd_choose(argparse.Namespace(partial=False))
    out = json.loads(script.OUT.with_suffix(".json").read_text())
    assert out["settings"]["distractor"]["recommended"] == "k=3,ranked"
    assert out["settings"]["haystack"]["recommended"] is None and "1.5b" not in out["settings"]["distractor"]
    # reported beside the choice: how often the context holds both supporting paragraphs, F1 either way
    dis = out["settings"]["distractor"]
    assert dis["holds both supporting"]["k=3,ranked"] == 0.5
    assert dis["mean F1 where both held"]["k=3,ranked"] == pytest.approx(0.5)
    assert dis["mean F1 where not"]["k=7,input"] == pytest.approx(0.2)
    # what the 1.5B reads: the recommended candidate and the current one; nothing where none is recommended
    assert script.cells_for("distractor", "1.5b", out) == ["k=7,input", "k=3,ranked"]
    assert script.cells_for("haystack", "1.5b", out) == []
    assert script.cells_for("haystack", "0.5b", out) == script.candidates("haystack")
    # the 1.5B's check: no gain there, so the recommendation is the 0.5B's only
    with path.open("a") as f:
        f.write("\n")
        for r in _records(script, "1.5b", {"k=7,input": 0.5, "k=3,ranked": 0.5}, 100):
            f.write(json.dumps(r) + "\n")
    script.cmd_choose(argparse.Namespace(partial=False))
    check = json.loads(script.OUT.with_suffix(".json").read_text())["settings"]["distractor"]["1.5b"]
    assert check["questions"] == 100 and check["holds"] is False


def _shared(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    (shared / "qrels").mkdir(parents=True)
    (shared / "runs").mkdir()
    qs = [("a1", "Who?"), ("b2", "Where?")]
    (shared / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in qs))
    corpus = [{"_id": f"{q}::{i}", "title": f"T{q}{i}", "text": "x"} for q, _ in qs for i in range(3)]
    (shared / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (shared / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na1\ta1::0\t1\na1\ta1::2\t1\n"
                                               "b2\tb2::1\t1\nb2\tb2::2\t1\n")
    (shared / "runs" / "given.trec").write_text("".join(f"{q} Q0 {q}::{i} {i} 1 given\n" for q, _ in qs
                                                        for i in range(3)))
    return shared


def test_dev_answers_are_checked_against_the_shared_folder(tmp_path, monkeypatch):
    answers = _load("hotpotqa_dev_answers")
    shared = _shared(tmp_path)
    good = [{"_id": "a1", "question": "Who?", "answer": "Ann", "type": "bridge", "level": "easy",
             "supporting_facts": [["Ta10", 0], ["Ta12", 1]]},
            {"_id": "b2", "question": "Where?", "answer": "Rome", "type": "comparison", "level": "hard",
             "supporting_facts": [["Tb21", 0], ["Tb22", 0]]}]
    assert answers.check(good, shared) == []
    bad = [dict(good[0], question="Who is?"), dict(good[1], supporting_facts=[["Tb20", 0]], answer=" ")]
    problems = answers.check(bad, shared)
    assert any("a1: question text" in p for p in problems) and any("b2: supporting" in p for p in problems)
    assert any("b2: no answer" in p for p in problems)
    assert answers.check(good[::-1], shared)[0].startswith("the ids")
    # the file's checksum is checked before anything is written; the output never goes inside the repo
    src = tmp_path / "train.json"
    src.write_text(json.dumps(good))
    assert answers.main([str(src), "--shared", str(shared), "--out", str(tmp_path / "o")]) == 2
    monkeypatch.setattr(answers, "SOURCE_SHA256", hashlib.sha256(src.read_bytes()).hexdigest())
    assert answers.main([str(src), "--shared", str(shared), "--out", str(answers.REPO / "x")]) == 2
    assert answers.main([str(src), "--shared", str(shared), "--out", str(tmp_path / "o")]) == 0
    from qrhead_integrations.eval.hotpotqa import hotpotqa_items

    items = hotpotqa_items(tmp_path / "o")
    assert [it.answers for it in items] == [["Ann"], ["Rome"]] and items[0].gold == [0, 2]


def test_test_step_runs_only_what_was_recommended_and_the_table_shows_the_choice(script, capsys, monkeypatch):
    small = {c: 0.2 for c in script.candidates("distractor")} | {"k=3,ranked": 0.4}
    hay = {c: 0.2 for c in script.candidates("haystack")}
    lines = _records(script, "0.5b", small, 100) + _records(script, "0.5b", hay, 100, "haystack")
    script.OUT.with_suffix(".dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    script.cmd_choose(argparse.Namespace(partial=False))
    capsys.readouterr()

    def test(setting: str, reader: str) -> None:
        script.cmd_test(argparse.Namespace(setting=setting, reader=reader, shard=None, dry_run=True))

    test("distractor", "0.5b")
    cmd = capsys.readouterr().err
    assert "--k 3 " in cmd and "--context-order ranked" in cmd and "--selectors bm25 qrhead qrhead-bm25" in cmd
    assert "qa-hotpot-distractor-qwen05-k3-ranked.jsonl" in cmd
    with pytest.raises(SystemExit, match="nothing was recommended"):
        test("haystack", "0.5b")
    with pytest.raises(SystemExit, match="has not held for the 1.5b"):
        test("distractor", "1.5b")
    tables = _load("results_tables")
    monkeypatch.setattr(tables, "RES", script.OUT.parent)
    table = tables.hotpot_reader_table()
    assert "| distractor (K = 7, 100 q): mean F1 |" in table and "**0.450**" in table  # the best cell, in bold
    assert "| distractor: share holding both supporting | 0.500 |" in table
    assert "recommended: **k=3,ranked**" in table and "recommended: none (k=8,input stays)" in table


def test_adaptive_k_auc_counts_ties_half_and_orders():
    module = _load("hotpotqa_adaptive_k")
    assert module.auc([True, False], [2.0, 1.0]) == 1.0
    assert module.auc([True, False], [1.0, 2.0]) == 0.0
    assert module.auc([True, False, True, False], [1.0, 1.0, 3.0, 0.0]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_adaptive_k_reading_in_the_docs_is_what_the_script_prints(capsys):
    """end_to_end.md quotes the script's figures on the committed dev files; they must stay its output."""
    module = _load("hotpotqa_adaptive_k")
    module.main()
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| ").split(" (")[0]: line for line in out.splitlines()[2:]}
    assert "k=7: 0.356" in rows["distractor"] and "0.4: 0.341 (0.10)" in rows["distractor"]
    assert "k=8: 0.321" in rows["haystack"] and "0.3: 0.321 (0.00)" in rows["haystack"]
    assert rows["distractor"].endswith("| 0.40 | 0.64 |")
    assert rows["haystack"].endswith("| 0.35 | 0.72 |")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "end_to_end.md").read_text()
    for quoted in ("0.341 vs 0.356 distractor, 0.321 vs 0.321 haystack", "0.50 / 0.45",
                   "ROC AUC 0.64 distractor, 0.72 haystack"):
        assert quoted in " ".join(doc.split())
    assert "| 0.499 |" in rows["distractor"] and "| 0.448 |" in rows["haystack"]
