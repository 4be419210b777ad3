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
