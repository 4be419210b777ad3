"""scripts/hotpotqa_fusion_rule.py decides a documented recommendation, so its arithmetic and its rule are
tested on synthetic dev records."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from qrhead_integrations.engine.fusion import fuse

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hotpotqa_fusion_rule.py"


@pytest.fixture()
def script(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("hotpotqa_fusion_rule", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path / "hotpotqa-fusion")
    return module


def _record(qid: str, setting: str, heads: list[float], bm25: list[float], gold: list[int]) -> dict:
    placement = sorted(range(len(bm25)), key=lambda i: -bm25[i])
    return {"setting": setting, "qid": qid, "gold": gold, "qrhead_scores": heads, "bm25_scores": bm25,
            "placement": placement}


def test_recall_curve_is_the_mean_recall_from_two_to_top(script):
    # gold at ranks 1 and 4: recall@2 0.5, @3 0.5, @4 1.0
    assert script.recall_curve([7, 1, 2, 9, 3], [7, 9], 4) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_fused_order_is_the_library_fusion_with_placement_ties(script):
    rec = _record("q", "distractor", [0.0, 0.9, 0.1, 0.5], [3.0, 0.0, 2.0, 1.0], [1])
    for w in script.WEIGHTS:
        final = fuse(rec["qrhead_scores"], rec["bm25_scores"], "linear", w)
        got = script.fused_order(rec, w)
        assert [final[i] for i in got] == sorted(final, reverse=True)
    assert script.fused_order(rec, 1.0)[0] == 1  # the heads alone put their best first
    assert script.fused_order(rec, 0.5)[0] == 0  # BM25's best (heads 0.0) still leads at the shipped weight
    tied = _record("t", "distractor", [0.5, 0.5], [1.0, 1.0], [0])
    tied["placement"] = [1, 0]
    assert script.fused_order(tied, 0.7) == [1, 0]  # equal fused scores: the placement's order


def _write(script, rows):
    script.OUT.with_suffix(".dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _choose(script, partial=False):
    script.cmd_choose(argparse.Namespace(partial=partial))
    return json.loads(script.OUT.with_suffix(".json").read_text())


def _dev(heads_help: bool, n: int = 100) -> list[dict]:
    """n questions x 2 settings, 12 paragraphs; gold 0 and 1. BM25 ranks gold 1 last; the heads put it
    second, above every distractor, when ``heads_help`` (fused above them from w = 0.7 on), else last."""
    rows = []
    for q in range(n):
        bm25 = [11.0, 0.0] + [10.9 - j * 0.1 for j in range(10)]
        heads = [1.0, 0.5 if heads_help else 0.0] + [0.0] * 10
        for setting in ("distractor", "haystack"):
            rows.append(_record(f"q{q}", setting, heads, bm25, [0, 1]))
    return rows


def test_a_clear_dev_gain_recommends_a_weight(script):
    _write(script, _dev(heads_help=True))
    out = _choose(script)
    assert out["questions"] == 100
    assert out["best"] == 0.7 and out["recommended"] == 0.7  # 0.7..1.0 tie: the one nearest 0.5
    assert out["best minus shipped"]["low"] > 0


def test_no_gain_keeps_the_shipped_default(script):
    _write(script, _dev(heads_help=False))
    out = _choose(script)
    assert out["best"] == script.SHIPPED  # all tied: the one nearest 0.5
    assert out["recommended"] is None and out["best minus shipped"] is None


def test_choose_refuses_an_unfinished_dev_run(script, capsys):
    _write(script, _dev(heads_help=True, n=10))
    with pytest.raises(SystemExit, match="10 questions"):
        _choose(script)
    script.cmd_choose(argparse.Namespace(partial=True))  # figures so far, nothing written
    assert json.loads(capsys.readouterr().out)["partial"] is True
    assert not script.OUT.with_suffix(".json").exists()


def test_test_step_refuses_without_a_recommendation(script):
    script.OUT.with_suffix(".json").write_text(json.dumps({"recommended": None}))
    with pytest.raises(SystemExit, match="nothing to test"):
        script.cmd_test(argparse.Namespace(setting="haystack", reader="0.5b", dry_run=True))


def test_test_step_runs_the_recommended_weight(script, capsys):
    script.OUT.with_suffix(".json").write_text(json.dumps({"recommended": 0.8}))
    (script.OUT.parent / "hotpotqa-rules.json").write_text(
        json.dumps({"chosen": {"window": 4096, "k_haystack": 8, "k_distractor": 7}}))
    script.cmd_test(argparse.Namespace(setting="haystack", reader="0.5b", dry_run=True))
    command = capsys.readouterr().err
    assert "--k 8 --max-context-tokens 4096" in command
    assert "--fusion-weight 0.8 --selectors bm25 qrhead qrhead-bm25" in command
    assert "qa-hotpot-haystack-qwen05-w08.jsonl" in command
