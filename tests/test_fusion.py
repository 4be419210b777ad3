"""Fusion of QRHead scores with the first stage."""

from __future__ import annotations

import pytest
from conftest import load_tokenizer, tiny_model

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.errors import QRHeadValueError
from qrhead_integrations.engine.fusion import fuse, ranks_of


def test_ranks_of_ties_share_their_mean_rank():
    assert list(ranks_of([0.1, 0.5, 0.5, -1])) == [3, 1.5, 1.5, 4]
    assert list(ranks_of([0.0, 2.0, 0.0, 0.0])) == [3, 1, 3, 3]


def test_rrf_by_hand():
    qr = [0.9, 0.1, 0.5]  # ranks 1, 3, 2 ; first stage = input order: ranks 1, 2, 3
    out = fuse(qr, None, "rrf", weight=0.5, rrf_k=60)
    expected = [0.5 / 61 + 0.5 / 61, 0.5 / 63 + 0.5 / 62, 0.5 / 62 + 0.5 / 63]
    assert out == pytest.approx(expected)
    # weight 1 follows QRHead, weight 0 follows the first stage
    assert ranks_of(fuse(qr, None, "rrf", weight=1.0)).tolist() == [1, 3, 2]
    assert ranks_of(fuse(qr, [1.0, 3.0, 2.0], "rrf", weight=0.0)).tolist() == [3, 1, 2]


def test_linear_by_hand():
    out = fuse([0.0, 1.0, 0.5], [10.0, 0.0, 5.0], "linear", weight=0.25)
    assert out == pytest.approx([0.75, 0.25, 0.5])
    assert fuse([], None, "linear") == []


@pytest.mark.parametrize("bad", [dict(method="max"), dict(weight=1.5)])
def test_fuse_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        fuse([1.0], None, **bad)
    with pytest.raises(ValueError, match="2 values for 1"):
        fuse([1.0], [1.0, 2.0])


def test_scorer_rank_with_fusion():
    tok = load_tokenizer("smollm2")
    model = tiny_model("llama", tok)
    passages = ["alpha beta", "gamma delta", "epsilon", "zeta eta theta"]
    plain = QRHeadScorer.from_model(model, tok, heads=[(1, 0), (2, 1)])
    fused = QRHeadScorer.from_model(model, tok, heads=[(1, 0), (2, 1)], fusion="rrf", fusion_weight=0.0)
    # weight 0: pure first stage, i.e. the input order (or the given first-stage scores)
    assert [r.index for r in fused.rank("q", passages)] == [0, 1, 2, 3]
    assert [r.index for r in fused.rank("q", passages, first_stage_scores=[0, 3, 2, 1])] == [1, 2, 3, 0]
    res = fused.rank("q", passages, first_stage_scores=[0, 3, 2, 1])
    qr = plain.score("q", passages)
    assert {r.index: r.qrhead_score for r in res} == pytest.approx(dict(enumerate(qr)))
    assert {r.index: r.first_stage_score for r in res} == {0: 0, 1: 3, 2: 2, 3: 1}
    with pytest.raises(ValueError, match="fusion"):
        QRHeadScorer.from_model(model, tok, heads=[(1, 0)], fusion="max")


def test_auto_fusion_is_the_head_sets_recommendation_applied_with_a_first_stage():
    """fusion="auto" (the default): the head set's recommended fusion, applied to the caller's first-stage
    scores, else to what first_stage computes ("auto": BM25 over the passages for a set that fuses). The
    input order is a ranking only with first_stage="order"; the LangChain adapter passes no order."""
    from langchain_core.documents import Document

    from qrhead_integrations.engine.heads import HeadSet
    from qrhead_integrations.first_stage import bm25_scores
    from qrhead_integrations.langchain import QRHeadReranker

    tok = load_tokenizer("smollm2")
    model = tiny_model("llama", tok)
    passages = ["alpha beta", "gamma delta", "epsilon", "zeta eta theta"]
    first = [0.0, 3.0, 2.0, 1.0]
    query = "gamma gamma zeta"
    heads = HeadSet(((1, 0), (2, 1)), info={"recommended_options": {"fusion": "rrf", "fusion_weight": 0.0}})
    auto = QRHeadScorer.from_model(model, tok, heads=heads)
    assert auto.effective_options.fusion == "rrf" and auto.effective_options.fusion_weight == 0.0
    assert auto.effective_options.first_stage == "bm25"
    # with scores: the recommendation (weight 0 = the first stage alone)
    assert [r.index for r in auto.rank(query, passages, first_stage_scores=first)] == [1, 2, 3, 0]
    # without: BM25 over the passages stands in (weight 0: BM25's ranking, ties in input order)
    bm25 = bm25_scores(query, passages)
    assert bm25[1] > bm25[3] > 0 == bm25[0] == bm25[2]
    no_fs = auto.rank(query, passages)
    assert [r.index for r in no_fs] == [1, 3, 0, 2] and no_fs[0].fused
    assert [r.first_stage_score for r in no_fs] == [bm25[i] for i in (1, 3, 0, 2)]
    # the input order only when asked for
    order = QRHeadScorer.from_model(model, tok, heads=heads, first_stage="order")
    assert [r.index for r in order.rank(query, passages)] == [0, 1, 2, 3]
    # the heads alone when asked for, or when the head set recommends no first stage
    alone = auto.with_options(first_stage=None)
    plain = QRHeadScorer.from_model(model, tok, heads=heads, fusion=None)
    assert plain.effective_options.first_stage is None
    ranked = alone.rank(query, passages)
    assert [r.index for r in ranked] == [r.index for r in plain.rank(query, passages)] and not ranked[0].fused
    no_first = HeadSet(((1, 0), (2, 1)), info={"recommended_options": {"fusion": "rrf", "first_stage": None}})
    assert QRHeadScorer.from_model(model, tok, heads=no_first).effective_options.first_stage is None
    # fusion=None means the heads alone even where the set recommends a first stage (no error)
    recommends = HeadSet(((1, 0), (2, 1)), info={"recommended_options": {"fusion": "rrf", "first_stage": "bm25"}})
    off = QRHeadScorer.from_model(model, tok, heads=recommends, fusion=None).effective_options
    assert off.fusion is None and off.first_stage is None
    # the LangChain adapter without scores: the same ranking as the scorer, whatever the documents' order
    docs = [Document(page_content=p) for p in passages]
    out = QRHeadReranker.from_scorer(auto, top_n=None).compress_documents(docs, query)
    assert [d.page_content for d in out] == [passages[i] for i in (1, 3, 0, 2)]
    out = QRHeadReranker.from_scorer(auto, top_n=None).compress_documents(docs[::-1], query)
    assert [d.page_content for d in out][:2] == [passages[1], passages[3]]
    # a head set without a recommendation: auto = no fusion at all, the heads alone
    bare = QRHeadScorer.from_model(model, tok, heads=[(1, 0), (2, 1)])
    assert bare.effective_options.fusion is None and bare.effective_options.first_stage is None
    # a computed first stage needs a fusion: linear when none is recommended, an error with fusion=None
    assert bare.with_options(first_stage="bm25").effective_options.fusion == "linear"
    with pytest.raises(QRHeadValueError, match="fusion=None"):
        bare.with_options(first_stage="bm25", fusion=None)


@pytest.mark.parametrize("first_stage", ["bm25", None])
def test_without_first_stage_scores_the_fusion_uses_no_order_information(first_stage):
    """#25 item 1: with the heads' scores held fixed, permuting the input permutes the fused scores and
    nothing else (the first stage computed for inputs without scores is order-free)."""
    import random

    from qrhead_integrations.engine.prompt import Passage
    from qrhead_integrations.engine.ranking import rank_passages

    tok = load_tokenizer("smollm2")
    scorer = QRHeadScorer.from_model(tiny_model("llama", tok), tok, heads=[(1, 0)], fusion="linear",
                                     first_stage=first_stage)
    passages = [Passage("The Pacific is the largest ocean on Earth.", "Oceans"),
                Passage("The Indian Ocean is the third largest ocean."), Passage("Bananas are yellow."),
                Passage("Largest ocean: see the Pacific.", "ocean facts"), Passage("Rivers flow into the ocean."),
                Passage("Mount Everest is the highest mountain.")]
    query = "What is the largest ocean on Earth?"
    heads = [0.31, 0.05, -0.2, 0.31, 0.12, 0.0]  # with a tie, which only the input order may break

    def fused(order):
        opts, fs = scorer.first_stage_for(query, [passages[i] for i in order], None)
        ranked = rank_passages([passages[i] for i in order], [heads[i] for i in order], opts, first_stage_scores=fs)
        return {order[r.index]: (r.score, r.first_stage_score) for r in ranked}, [order[r.index] for r in ranked]

    want, want_order = fused(list(range(len(passages))))
    rng = random.Random(0)
    for _ in range(8):
        order = list(range(len(passages)))
        rng.shuffle(order)
        got, got_order = fused(order)
        assert got == want  # every passage keeps its fused and first-stage score exactly
        # the ranking is the same up to the order of exact ties
        assert [want[i][0] for i in got_order] == [want[i][0] for i in want_order]
