"""scripts/qa_gold_breakdown.py: the figures end_to_end.md quotes come from it, so its arithmetic is tested."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from qrhead_integrations.eval.metrics import paired_bootstrap

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "qa_gold_breakdown.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("qa_gold_breakdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(path: Path, a: dict[str, float], b: dict[str, float]) -> str:
    path.write_text(json.dumps({"summary": {"x": {"correct": a}, "y": {"correct": b}}}))
    return str(path)


def test_pool_is_the_bootstrap_over_the_union(script, tmp_path, capsys):
    r1 = _summary(tmp_path / "r1.json", {"q1": 1.0, "q2": 0.0}, {"q1": 0.0, "q2": 0.0})
    r2 = _summary(tmp_path / "r2.json", {"q3": 1.0, "q4": 1.0, "q5": 0.0}, {"q3": 1.0, "q4": 0.0, "q5": 1.0})
    script.pool("x", "y", [r1, r2])
    out = capsys.readouterr().out
    union_x = {"q1": 1.0, "q2": 0.0, "q3": 1.0, "q4": 1.0, "q5": 0.0}
    union_y = {"q1": 0.0, "q2": 0.0, "q3": 1.0, "q4": 0.0, "q5": 1.0}
    assert out.startswith("5 questions from 2 runs: x 0.600, y 0.400")
    assert str(paired_bootstrap(union_x, union_y)) in out


def test_pool_refuses_overlapping_runs(script, tmp_path):
    r1 = _summary(tmp_path / "r1.json", {"q1": 1.0}, {"q1": 0.0})
    with pytest.raises(SystemExit, match="already pooled"):
        script.pool("x", "y", [r1, r1])


def test_pool_refuses_selectors_on_different_questions(script, tmp_path):
    r1 = _summary(tmp_path / "r1.json", {"q1": 1.0}, {"q2": 0.0})
    with pytest.raises(SystemExit, match="different questions"):
        script.pool("x", "y", [r1])


def test_hotpot_breakdown_splits_by_the_share_of_supporting_paragraphs(script, tmp_path, capsys, monkeypatch):
    def row(recall: float, f1: float) -> dict:
        return {"evidence_recall": recall, "correct": f1 == 1.0, "f1": f1, "em": float(f1 == 1.0)}

    recs = [{"id": "q1", "gold": [2, 7], "selectors": {"bm25": row(0.5, 0.0), "qrhead-bm25": row(1.0, 1.0)}},
            {"id": "q2", "gold": [1, 4], "selectors": {"bm25": row(0.5, 0.5), "qrhead-bm25": row(1.0, 0.25)}},
            {"id": "q3", "gold": [0, 3], "selectors": {"bm25": row(1.0, 1.0), "qrhead-bm25": row(1.0, 1.0)}}]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    monkeypatch.setattr("sys.argv", ["x", str(path), "bm25", "qrhead-bm25", "--metric", "f1"])
    script.main()
    out = capsys.readouterr().out
    assert "| 1.0 | 1.0 | 1 | 1.00 | 1.00 |" in out
    assert "| 0.5 | 1.0 | 2 | 0.50 | 1.25 |" in out  # F1 summed per cell
    assert "bm25: 3 questions, F1 0.500, evidence recall 0.67" in out
    assert "qrhead-bm25: 3 questions, F1 0.750, evidence recall 1.00" in out
