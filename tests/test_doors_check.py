"""scripts/doors_check.py: its rank correlation, and the hand-written set it reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("doors_check", ROOT / "scripts" / "doors_check.py")
doors_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(doors_check)


def test_kendall_tau():
    assert doors_check.kendall_tau([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert doors_check.kendall_tau([0, 1, 2, 3], [3, 2, 1, 0]) == -1.0
    assert doors_check.kendall_tau([0, 1, 2], [1, 0, 2]) == 1 / 3
    assert doors_check.kendall_tau([5], [5]) == 1.0


def test_the_obvious_question_set_is_well_formed():
    data = json.loads((ROOT / "tests" / "data" / "obvious_questions.json").read_text())
    items = data["items"]
    assert len(items) >= 30 and len({i["id"] for i in items}) == len(items)
    positions = {"first": 0, "middle": 0, "last": 0}
    for it in items:
        n = len(it["candidates"])
        assert 3 <= n <= 10 and 0 <= it["gold"] < n and len(set(it["candidates"])) == n
        assert it["query"].strip() and it["trap"].strip()
        positions["first" if it["gold"] == 0 else "last" if it["gold"] == n - 1 else "middle"] += 1
    assert min(positions.values()) >= 8  # the answer at every position
