"""QRHeadScorer behaviour on a tiny model: edge cases, order, windows, truncation, reuse."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pytest
from conftest import tiny_model
from reference import reference_scores

from qrhead_integrations import HeadSetError, QRHeadScorer, RankedPassage
from qrhead_integrations.engine.prompt import as_passage, build_prompt

HEADS = [(1, 0), (2, 1), (3, 3)]
PASSAGES = [
    "Alpha centauri is the closest star system to the Sun.",
    {"title": "Bees", "text": "Honey bees communicate with a waggle dance."},
    "The Danube flows through ten countries.",
    "Alpha centauri is the closest star system to the Sun.",
    "a",
    "",
]


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model("llama", tok, layers=4)


@pytest.fixture
def scorer(model, tok):
    return QRHeadScorer.from_model(model, tok, heads=HEADS)


def test_score_and_rank_contract(scorer):
    scores = scorer.score("closest star?", PASSAGES)
    assert len(scores) == len(PASSAGES) and all(type(s) is float and math.isfinite(s) for s in scores)
    ranked = scorer.rank("closest star?", PASSAGES)
    assert [r.rank for r in ranked] == list(range(1, len(PASSAGES) + 1))
    assert sorted(r.index for r in ranked) == list(range(len(PASSAGES)))
    assert all(isinstance(r, RankedPassage) for r in ranked)
    for r in ranked:
        assert r.score == scores[r.index]
        expected = PASSAGES[r.index]["text"] if isinstance(PASSAGES[r.index], dict) else PASSAGES[r.index]
        assert r.text == expected
    assert [r.score for r in ranked] == sorted(scores, reverse=True)
    assert ranked[[r.index for r in ranked].index(1)].title == "Bees"
    top = scorer.rank("closest star?", PASSAGES, top_k=2)
    assert [r.index for r in top] == [r.index for r in ranked[:2]]
    assert scorer.rank("closest star?", PASSAGES, top_k=0) == []


def test_duplicates_are_both_scored(scorer):
    scores = scorer.score("closest star?", PASSAGES)
    assert scores[0] != 0.0 and scores[3] != 0.0  # separate spans, separate (position-dependent) scores


def test_empty_inputs(scorer):
    assert scorer.score("q", []) == []
    assert scorer.rank("q", []) == []
    for bad in ["", "   \n\t"]:
        with pytest.raises(ValueError, match="query is empty"):
            scorer.score(bad, PASSAGES)
        with pytest.raises(ValueError, match="query is empty"):
            scorer.rank(bad, [])
    with pytest.raises(TypeError):
        scorer.score(None, PASSAGES)
    with pytest.raises(TypeError, match="position 1"):
        scorer.score("q", ["ok", 42])
    with pytest.raises(ValueError, match="top_k"):
        scorer.rank("q", PASSAGES, top_k=-1)


def test_inputs_are_not_mutated(scorer):
    passages = copy.deepcopy(PASSAGES)
    before = copy.deepcopy(passages)
    scorer.rank("closest star?", passages)
    assert passages == before


def test_model_config_restored_and_model_untouched(model, tok):
    impl = model.config._attn_implementation
    params = {k: v.clone() for k, v in model.state_dict().items()}
    QRHeadScorer.from_model(model, tok, heads=HEADS).score("q", PASSAGES)
    assert model.config._attn_implementation == impl
    for k, v in model.state_dict().items():
        assert v.equal(params[k])


def test_matches_reference_with_titles_and_empty_passages(scorer, model, tok):
    ref, _, _ = reference_scores(model, tok, PASSAGES, "closest star?", HEADS)
    np.testing.assert_allclose(scorer.score("closest star?", PASSAGES), ref, atol=1e-5)


def test_candidate_orders(model, tok):
    rev = QRHeadScorer.from_model(model, tok, heads=HEADS, candidate_order="reversed")
    given = QRHeadScorer.from_model(model, tok, heads=HEADS, candidate_order="as_given")
    both = QRHeadScorer.from_model(model, tok, heads=HEADS, candidate_order="both")
    a, b, c = (s.head_masses("closest star?", PASSAGES) for s in (rev, given, both))
    assert not np.allclose(a.real, b.real)
    np.testing.assert_allclose(c.real, (a.real + b.real) / 2, atol=1e-9)
    np.testing.assert_allclose(c.null, (a.null + b.null) / 2, atol=1e-9)
    with pytest.raises(ValueError, match="candidate_order"):
        QRHeadScorer.from_model(model, tok, heads=HEADS, candidate_order="sideways")


def test_no_calibration(model, tok):
    s = QRHeadScorer.from_model(model, tok, heads=HEADS, calibrate=False)
    hs = s.head_masses("closest star?", PASSAGES)
    assert hs.null is None
    np.testing.assert_allclose(s.score("closest star?", PASSAGES), hs.real.mean(axis=0))
    assert all(v >= 0 for v in s.score("closest star?", PASSAGES))


def test_heads_validation_errors(model, tok):
    with pytest.raises(HeadSetError, match="do not exist"):
        QRHeadScorer.from_model(model, tok, heads="4-0")
    with pytest.raises(HeadSetError, match="no 'qrhead' head set is registered"):
        QRHeadScorer.from_model(model, tok)  # a random tiny model has no registered heads
    assert len(QRHeadScorer.from_model(model, tok, heads="all").heads) == 16


def test_max_passage_tokens_truncates_and_flags(model, tok, caplog):
    s = QRHeadScorer.from_model(model, tok, heads=HEADS, max_passage_tokens=4)
    ranked = s.rank("closest star?", PASSAGES)
    by_index = {r.index: r for r in ranked}
    assert by_index[0].truncated and by_index[0].text == PASSAGES[0]  # the caller's text; the cut is scored_text
    cut = by_index[0].scored_text
    assert cut != PASSAGES[0] and PASSAGES[0].startswith(cut) and len(tok(cut)["input_ids"]) <= 4
    assert not by_index[4].truncated and by_index[4].text == "a" and by_index[4].scored_text is None
    assert PASSAGES[0] == "Alpha centauri is the closest star system to the Sun."  # caller's data intact


def test_windows_when_prompt_exceeds_budget(model, tok, caplog):
    many = [f"Passage number {i} talks about topic {i % 7} in some detail." for i in range(40)]
    full = QRHeadScorer.from_model(model, tok, heads=HEADS)
    assert len(full.encode(many).windows) == 1
    s = QRHeadScorer.from_model(model, tok, heads=HEADS, max_context_tokens=300, max_query_tokens=32)
    enc = s.encode(many)
    assert len(enc.windows) > 1
    for w in enc.windows:  # every window's prompt fits the budget, with room for a query
        assert len(w.null_prompt) - s.count_tokens("N/A") + s.max_query_tokens <= 300
    with caplog.at_level(logging.INFO, logger="qrhead_integrations"):
        ranked = s.rank("topic 3", many)
    assert sorted(r.index for r in ranked) == list(range(40))
    assert all(math.isfinite(r.score) for r in ranked)
    assert len({r.window for r in ranked}) > 1  # rank() plans for its own (short) query
    assert "windows" in caplog.text
    # windows are balanced: sizes differ by at most one
    sizes = [enc.window_of.count(w) for w in set(enc.window_of)]
    assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="max_query_tokens"):
        enc.score("a much longer query " * 10)


def test_prompt_that_fits_exactly_is_not_split(model, tok):
    passages = [f"Passage {i} is about topic {i}." for i in range(12)]
    full = QRHeadScorer.from_model(model, tok, heads=HEADS)
    exact = len(build_prompt(tok, [as_passage(p, i) for i, p in enumerate(passages)][::-1], "topic 3"))
    tight = QRHeadScorer.from_model(model, tok, heads=HEADS, max_context_tokens=exact)
    assert len(tight.rank("topic 3", passages)[0:1]) == 1
    np.testing.assert_allclose(tight.score("topic 3", passages), full.score("topic 3", passages), atol=1e-6)
    assert len({r.window for r in tight.rank("topic 3", passages)}) == 1  # the per-passage margin alone says 2
    short = QRHeadScorer.from_model(model, tok, heads=HEADS, max_context_tokens=exact - 1)
    assert len({r.window for r in short.rank("topic 3", passages)}) > 1  # one token less: windows


def test_passage_longer_than_context_is_truncated_with_warning(model, tok, caplog):
    s = QRHeadScorer.from_model(model, tok, heads=HEADS, max_context_tokens=200)
    long = "word " * 400
    with caplog.at_level(logging.WARNING, logger="qrhead_integrations"):
        ranked = s.rank("q", [long, "short"])
    assert {r.index: r.truncated for r in ranked} == {0: True, 1: False}
    assert "truncated" in caplog.text


def test_context_too_small_is_clear_error(model, tok):
    s = QRHeadScorer.from_model(model, tok, heads=HEADS, max_context_tokens=40)
    with pytest.raises(ValueError, match="leaves no room"):
        s.score("q", PASSAGES)


def test_encode_once_score_many(scorer):
    enc = scorer.encode(PASSAGES)
    for q in ["closest star?", "bees dance", "rivers of europe"]:
        np.testing.assert_allclose(enc.score(q), scorer.score(q, PASSAGES), atol=1e-6)
        assert [r.index for r in enc.rank(q)] == [r.index for r in scorer.rank(q, PASSAGES)]
    assert len(enc) == len(PASSAGES)


def test_score_batch(scorer):
    out = scorer.score_batch([("closest star?", PASSAGES), ("bees", PASSAGES[:2]), ("x", [])])
    assert [len(o) for o in out] == [6, 2, 0]


def test_option_validation(model, tok):
    for bad in [{"max_context_tokens": 0}, {"max_passage_tokens": -5}, {"null_query": " "}]:
        with pytest.raises(ValueError):
            QRHeadScorer.from_model(model, tok, heads=HEADS, **bad)


def test_head_set_of_another_model_warns(model, tok, caplog, tmp_path):
    from qrhead_integrations import HeadSet
    from qrhead_integrations.engine.heads import ModelShape, config_fingerprint

    shape = ModelShape.from_config(model.config)
    other = HeadSet(((1, 0), (2, 1)), name="theirs", model="org/other-model", shape=shape,
                    info={"config_fingerprint": "0" * 16})
    with caplog.at_level(logging.WARNING, logger="qrhead_integrations"):
        QRHeadScorer.from_model(model, tok, heads=other, model_name="org/my-model")
    assert "detected for org/other-model" in caplog.text and "different configuration" in caplog.text
    caplog.clear()
    mine = HeadSet(((1, 0),), model="org/My-Model", shape=shape,
                   info={"config_fingerprint": config_fingerprint(model.config)})
    with caplog.at_level(logging.WARNING, logger="qrhead_integrations"):
        QRHeadScorer.from_model(model, tok, heads=mine, model_name="org/my-model")
    assert caplog.text == ""
