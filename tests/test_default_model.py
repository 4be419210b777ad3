"""The embedded default model, for real: loads offline and ranks a hand-written set sensibly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qrhead_integrations import DEFAULT_MODEL, QRHeadScorer
from qrhead_integrations.engine.heads import lookup_registered

pytestmark = pytest.mark.real_model

SET = json.loads((Path(__file__).parent / "data" / "handwritten_set.json").read_text())


@pytest.fixture(scope="module")
def scorer():
    return QRHeadScorer.from_pretrained(DEFAULT_MODEL)


def _gold_rank(scorer, heads=None):
    ranks = []
    for item in SET["queries"]:
        if heads is None:
            scores = scorer.score(item["query"], SET["passages"])
        else:
            scores = scorer.head_masses(item["query"], SET["passages"], heads=heads).scores()
        order = np.argsort(-np.asarray(scores), kind="stable")
        ranks.append(int(np.nonzero(order == item["gold"])[0][0]) + 1)
    return np.asarray(ranks)


def test_default_uses_shipped_heads(scorer):
    assert scorer.heads == lookup_registered(scorer.model_name, scorer.shape)
    assert scorer.heads.info.get("data"), "the shipped set records how it was detected"
    assert scorer.model.dtype.is_floating_point


def test_gold_ranks_first_for_most_queries(scorer):
    ranks = _gold_rank(scorer)
    assert (ranks == 1).mean() >= 0.7, ranks
    assert (1.0 / ranks).mean() >= 0.8, ranks


def test_detected_heads_beat_random_heads(scorer):
    mrr = (1.0 / _gold_rank(scorer)).mean()
    random_mrr = [(1.0 / _gold_rank(scorer, heads=f"random:{len(scorer.heads)}:{seed}")).mean() for seed in range(3)]
    assert mrr > np.mean(random_mrr) + 0.1, (mrr, random_mrr)


def test_same_model_object_is_shared():
    a = QRHeadScorer.from_pretrained(DEFAULT_MODEL)
    b = QRHeadScorer.from_pretrained(DEFAULT_MODEL, heads="all")
    assert a.model is b.model and a.tokenizer is b.tokenizer


def test_readme_main_command_offline():
    """`qrhead rank` with the embedded default, in a fresh process with the hub switched off."""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "qrhead_integrations.cli", "rank", "--query", "Who wrote Hamlet?", "--top-k", "3",
         str(repo / "examples" / "passages.txt")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and "Hamlet" in lines[1]
