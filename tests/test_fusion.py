"""Fusion of QRHead scores with the first stage."""

from __future__ import annotations

import pytest
from conftest import load_tokenizer, tiny_model

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.fusion import fuse, ranks_of


def test_ranks_of_ties_keep_input_order():
    assert list(ranks_of([0.1, 0.5, 0.5, -1])) == [3, 1, 2, 4]


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
    """fusion="auto" (the default): the head set's recommended fusion, applied when first-stage scores are
    given; a plain list of passages is not taken for a ranking. The adapters pass their retriever's order
    as reciprocal ranks when it gave no scores, so they fuse either way."""
    from langchain_core.documents import Document

    from qrhead_integrations.engine.heads import HeadSet
    from qrhead_integrations.langchain import QRHeadReranker

    tok = load_tokenizer("smollm2")
    model = tiny_model("llama", tok)
    passages = ["alpha beta", "gamma delta", "epsilon", "zeta eta theta"]
    first = [0.0, 3.0, 2.0, 1.0]
    heads = HeadSet(((1, 0), (2, 1)), info={"recommended_options": {"fusion": "rrf", "fusion_weight": 0.0}})
    auto = QRHeadScorer.from_model(model, tok, heads=heads)
    plain = QRHeadScorer.from_model(model, tok, heads=heads, fusion=None)
    assert auto.effective_options.fusion == "rrf" and auto.effective_options.fusion_weight == 0.0
    # without first-stage scores: no fusion (the QRHead ranking)
    no_fs = auto.rank("q", passages)
    assert [r.index for r in no_fs] == [r.index for r in plain.rank("q", passages)] and not no_fs[0].fused
    # with them: the recommendation (weight 0 = the first stage alone)
    assert [r.index for r in auto.rank("q", passages, first_stage_scores=first)] == [1, 2, 3, 0]
    # an explicit fusion without scores fuses with the input order
    explicit = QRHeadScorer.from_model(model, tok, heads=heads, fusion="rrf")
    assert [r.index for r in explicit.rank("q", passages)] == [0, 1, 2, 3]
    # the LangChain adapter: the retriever's order is the first stage
    docs = [Document(page_content=p) for p in passages]
    out = QRHeadReranker.from_scorer(auto, top_n=None).compress_documents(docs, "q")
    assert [d.page_content for d in out] == passages
    # a head set without a recommendation: auto = no fusion at all
    bare = QRHeadScorer.from_model(model, tok, heads=[(1, 0), (2, 1)])
    assert bare.effective_options.fusion is None
