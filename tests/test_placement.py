"""Placement ``candidate_order="ranked"``: passages sit in the prompt by their first-stage scores, so any
permutation of the same input gives the same prompt, hence exactly permuted scores, at every door."""

from __future__ import annotations

import random

import pytest
from test_every_door import _doors, _same

from qrhead_integrations import HeadSet, QRHeadScorer, ScoringOptions
from qrhead_integrations.engine.layout import plan_layout
from qrhead_integrations.engine.placement import content_key, ranked_order
from qrhead_integrations.engine.prompt import Passage, resolve_template

QUERY = "Which river carries the most water?"
PASSAGES = ["The Amazon carries more water to the sea than any other river.",
            "Paris is the capital of France.", "Bees dance to show where flowers are.",
            "The Nile is the longest river in Africa.", "Photosynthesis turns light into sugar.",
            "Which river? The river question is about water."]
PERMS = [list(range(6)), [5, 4, 3, 2, 1, 0], [2, 0, 5, 1, 4, 3]]


@pytest.fixture(scope="module")
def ranked(model_dir):
    """A head set that records the 'ranked' placement and a fusion, as the embedded default's does."""
    heads = HeadSet(((1, 0), (2, 1), (3, 3)), info={"recommended_options": {
        "fusion": "linear", "fusion_weight": 0.5, "candidate_order": "ranked"}})
    return QRHeadScorer.from_pretrained(model_dir, heads, device="cpu")


def _by_text(ranking, passages):
    return [(passages[i], s) for i, s in ranking]


def test_ranked_order_uses_scores_then_content_never_positions():
    ps = [Passage("b"), Passage("a"), Passage("c", "t"), Passage("a", "t")]
    scores = [1.0, 2.0, 1.0, 1.0]
    order = ranked_order(scores, ps)
    assert order[0] == 1
    tied = sorted([0, 2, 3], key=lambda i: content_key(ps[i]))
    assert order[1:] == tied
    perm = [3, 1, 0, 2]
    again = ranked_order([scores[i] for i in perm], [ps[i] for i in perm])
    assert [perm[i] for i in again] == order
    with pytest.raises(ValueError, match="4 scores for 3 passages"):
        ranked_order(scores, ps[:3])


def test_auto_placement_is_the_head_sets_recommendation_else_reversed():
    assert ScoringOptions().candidate_order == "auto"
    assert ScoringOptions().resolved({}).candidate_order == "reversed"
    assert ScoringOptions().resolved({"candidate_order": "ranked"}).candidate_order == "ranked"
    assert ScoringOptions(candidate_order="as_given").resolved({"candidate_order": "ranked"}).candidate_order == "as_given"


@pytest.mark.parametrize("budget", [None, 96])
def test_a_ranked_layout_maps_back_to_input_positions(tok, budget):
    """Windows and placement follow the ranked order; every index in the layout is an input position."""
    ps = [Passage(t) for t in PASSAGES]
    template = resolve_template("qrhead", tok)
    order = [3, 0, 5, 1, 4, 2]
    kw = dict(template=template, null_query="N/A", candidate_order="reversed", budget=budget or 4096, query_room=16)
    plain = plan_layout(tok, [ps[i] for i in order], **kw)
    mapped = plan_layout(tok, ps, order=order, **kw)
    assert (len(mapped.windows) > 1) == (budget is not None)
    assert mapped.originals == tuple(ps)
    for a, b in zip(plain.prompts, mapped.prompts):
        assert a.null_prompt.input_ids == b.null_prompt.input_ids and a.passages == b.passages
        assert [order[j] for j in a.indices] == list(b.indices)
    assert [mapped.passages[i] for i in order] == list(plain.passages)
    assert [mapped.window_of[i] for i in order] == list(plain.window_of)
    with pytest.raises(ValueError, match="permutation"):
        plan_layout(tok, ps, order=[0, 1], **kw)


@pytest.mark.parametrize("first_stage", [None, [0.1, 2.0, 0.0, 1.5, 0.0, 0.3]])
def test_any_input_order_gives_the_same_scores_through_the_engine(ranked, first_stage):
    want = None
    for perm in PERMS:
        ps = [PASSAGES[i] for i in perm]
        fs = None if first_stage is None else [first_stage[i] for i in perm]
        by_text = {
            "rank": {ps[r.index]: r.score for r in ranked.rank(QUERY, ps, first_stage_scores=fs)},
            "encode().rank": {ps[r.index]: r.score for r in ranked.encode(ps).rank(QUERY, first_stage_scores=fs)},
        }
        if fs is None:
            by_text["score"] = dict(zip(ps, ranked.score(QUERY, ps)))
            by_text["score_batch"] = dict(zip(ps, ranked.score_batch([("other?", ps), (QUERY, ps)])[1]))
            by_text["head_masses"] = dict(zip(ps, ranked.head_masses(QUERY, ps).scores()))
        if want is None:
            want = by_text
        for name, got in by_text.items():
            assert got.keys() == want[name].keys()
            assert max(abs(got[t] - want[name][t]) for t in got) == 0.0, (name, perm)
    if first_stage is None:
        assert want["score"] == pytest.approx(want["score_batch"], abs=1e-9)


def test_ranked_windows_are_order_free(model_dir):
    scorer = QRHeadScorer.from_pretrained(model_dir, "1-0,2-1,3-3", device="cpu", candidate_order="ranked",
                                          max_context_tokens=120)
    results = []
    for perm in PERMS:
        ps = [PASSAGES[i] for i in perm]
        ranked = scorer.rank(QUERY, ps)
        assert max(r.window for r in ranked) >= 1
        results.append(sorted((ps[r.index], r.score, r.window) for r in ranked))
    assert results[0] == results[1] == results[2]


def test_an_encoding_scores_each_query_in_its_own_order(ranked):
    """encode() once, many queries: each query is placed by its own BM25 order, as a single call would."""
    enc = ranked.encode(PASSAGES)
    for q in (QUERY, "What do bees do?", QUERY):
        assert enc.score(q) == ranked.score(q, PASSAGES)
        assert [(r.index, r.score) for r in enc.rank(q)] == [(r.index, r.score) for r in ranked.rank(q, PASSAGES)]


def test_first_stage_order_places_by_the_input_order(model_dir):
    scorer = QRHeadScorer.from_pretrained(model_dir, "1-0,2-1,3-3", device="cpu", candidate_order="ranked",
                                          first_stage="order", fusion="linear")
    reversed_ = scorer.with_options(candidate_order="reversed")
    assert scorer.score(QUERY, PASSAGES) == reversed_.score(QUERY, PASSAGES)


@pytest.mark.parametrize("perm", PERMS[1:])
def test_every_door_is_order_free_with_ranked_placement(ranked, model_dir, tmp_path, capsys, perm):
    """The same ranking by content at every door, in any input order (the CLI loads the heads by name, so
    it is told the set's options)."""
    doors = _doors(ranked, model_dir, tmp_path, capsys,
                   cli_args=["--fusion", "linear", "--first-stage", "bm25", "--candidate-order", "ranked"])
    del doors["score_batch"]  # the heads' own scores (tested above)
    want = _by_text([(r.index, r.score) for r in ranked.rank(QUERY, PASSAGES)], PASSAGES)
    ps = [PASSAGES[i] for i in perm]
    for name, door in doors.items():
        got = _by_text(door(QUERY, ps), ps)
        try:
            _same([(PASSAGES.index(t), s) for t, s in got], [(PASSAGES.index(t), s) for t, s in want])
        except AssertionError as exc:
            raise AssertionError(f"{name} (order {perm}) differs from scorer.rank in the given order: {exc}") from None


def test_random_permutations_of_a_longer_input(ranked):
    rng = random.Random(0)
    ps = PASSAGES * 2 + ["A river delta forms where a river meets the sea.", "Rivers carry sediment."]
    want = sorted(zip(ps, ranked.score(QUERY, ps)))
    for _ in range(3):
        perm = list(range(len(ps)))
        rng.shuffle(perm)
        qs = [ps[i] for i in perm]
        assert sorted(zip(qs, ranked.score(QUERY, qs))) == want


def test_ties_follow_the_tie_order_not_the_input_order():
    from qrhead_integrations.engine.ranking import rank_passages

    ps = [Passage(t) for t in "abcd"]
    opts = ScoringOptions(fusion=None).resolved({})
    scores = [0.5, 0.7, 0.5, 0.5]
    assert [r.index for r in rank_passages(ps, scores, opts)] == [1, 0, 2, 3]
    assert [r.index for r in rank_passages(ps, scores, opts, tie_order=[3, 1, 2, 0])] == [1, 3, 2, 0]


def test_ranked_ties_are_settled_by_the_placement(ranked):
    """Equal final scores (here: equal first-stage scores and heads held equal by duplicates) come out in
    the placement's order, the same for any input order."""
    ps = ["Same words here.", "Other text entirely.", "Same words here."]
    a = [(ps[r.index], r.score) for r in ranked.rank(QUERY, ps)]
    b = [(ps[::-1][r.index], r.score) for r in ranked.rank(QUERY, ps[::-1])]
    assert a == b
