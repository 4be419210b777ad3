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


def test_gold_ranks_first_for_every_query(scorer):
    """The shipped head set alone (no first stage: the hand-written passages are not a ranking)."""
    ranks = _gold_rank(scorer)
    assert (ranks == 1).all(), ranks


def test_default_is_the_measured_configuration(scorer):
    """docs/quality.md: 32 heads with fitted weights, fused linearly with the first stage (w=0.5), applied
    when there is a first stage."""
    assert len(scorer.heads) == 32 and scorer.heads.weights is not None
    assert scorer.effective_options.fusion == "linear" and scorer.effective_options.fusion_weight == 0.5
    assert scorer.heads.info.get("recommended_options_evidence", "").startswith("docs/quality.md")


def test_the_mountain_example_in_first_stage_order(scorer):
    """The issue's example: a first stage that puts Everest first keeps it first after re-ranking (before,
    the QRHead score alone moved K2 above it). Through both adapters, as users call them. The 135M model's
    heads alone still prefer whichever of the two sits nearer the query (docs/quality.md)."""
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadRerank

    query = "What is the highest mountain in the world?"
    first_stage = ["Mount Everest is the highest mountain above sea level.",
                   "K2 is the second-highest mountain on Earth.",
                   "The Amazon carries more water than any other river.",
                   "Jupiter is the largest planet in the Solar System."]
    docs = QRHeadReranker.from_scorer(scorer, top_n=2).compress_documents(
        [Document(page_content=t) for t in first_stage], query)
    assert docs[0].page_content.startswith("Mount Everest"), [d.page_content for d in docs]
    # a first stage that gives no scores: its order stands in (a scored first stage fuses its scores; with
    # scores as close as Everest's and K2's, the heads' preference decides: docs/quality.md)
    nodes = QRHeadRerank.from_scorer(scorer, top_n=2).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t)) for t in first_stage], query_str=query)
    assert nodes[0].node.text.startswith("Mount Everest"), [n.node.text for n in nodes]


def test_detected_heads_beat_random_heads(scorer):
    mrr = (1.0 / _gold_rank(scorer)).mean()
    random_mrr = [(1.0 / _gold_rank(scorer, heads=f"random:{len(scorer.heads)}:{seed}")).mean() for seed in range(3)]
    # the shipped set ranks every gold first (above); random sets of the same size do not
    assert mrr == 1.0 and max(random_mrr) < 1.0, (mrr, random_mrr)


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
