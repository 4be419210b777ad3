"""The framework-free chunk selector: exact offsets, one scoring pass, top-k / token budget / order."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from conftest import tiny_model

from qrhead_integrations import QRHeadScorer, ScoringOptions
from qrhead_integrations.chunks import (
    Chunk,
    ChunkSelection,
    locate_chunks,
    select_chunks,
    split_by_tokens,
    token_counter,
)
from qrhead_integrations.engine.scoring import RankedPassage

HEADS = [(1, 0), (2, 1), (3, 3)]

DOC = (
    "The lighthouse at Pharos stood on an island off Alexandria.\n\n"
    "It was finished around 280 BC.  Its light guided ships into the harbour.\n\n"
    "Repeated line.\nRepeated line.\nRepeated line.\n\n"
    "Earthquakes damaged it in the fourteenth century, and its stones were reused in a fort."
)


@pytest.fixture(scope="module")
def scorer(tok):
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=HEADS)


def _check(document, chunks):
    for i, c in enumerate(chunks):
        assert document[c.start:c.end] == c.text
        assert c.index == i
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


# --- offsets ---------------------------------------------------------------------------------------


def test_locate_repeated_chunks_get_their_own_positions():
    texts = ["Repeated line.", "Repeated line.", "Repeated line."]
    chunks = locate_chunks(DOC, texts)
    first = DOC.index("Repeated line.")
    assert [c.start for c in chunks] == [first, first + 15, first + 30]
    _check(DOC, chunks)


def test_locate_overlapping_chunks():
    a, b = DOC[0:80], DOC[60:140]
    chunks = locate_chunks(DOC, [a, b, DOC[120:]])
    assert [(c.start, c.end) for c in chunks] == [(0, 80), (60, 140), (120, len(DOC))]


def test_locate_whitespace_normalised_chunks_map_to_the_source_slice():
    # A splitter that strips and collapses whitespace: the chunk is found ignoring whitespace and its
    # text becomes the exact source slice.
    collapsed = " ".join(DOC[60:200].split())
    chunks = locate_chunks(DOC, ["  " + collapsed + "\n"])
    (c,) = chunks
    assert DOC[c.start:c.end] == c.text
    assert " ".join(c.text.split()) == collapsed
    assert c.text != collapsed  # the source has double spaces and newlines there


def test_locate_drops_blank_chunks_and_rejects_foreign_text():
    chunks = locate_chunks(DOC, ["", "   ", "Repeated line."], source_id="doc-1")
    assert len(chunks) == 1 and chunks[0].index == 0 and chunks[0].source_id == "doc-1"
    with pytest.raises(ValueError, match="does not occur"):
        locate_chunks(DOC, ["The lighthouse at Rhodes"])
    with pytest.raises(TypeError):
        locate_chunks(DOC, [42])


def test_locate_random_documents_with_repeats():
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "\n\n", "  ", "."]
    for _ in range(30):
        doc = "".join(rng.choice(words) + rng.choice([" ", "", "\n"]) for _ in range(200))
        size, step = rng.randint(10, 60), rng.randint(5, 40)
        texts = [doc[i:i + size] for i in range(0, len(doc), step)]
        texts = [t for t in texts if t.strip()]
        chunks = locate_chunks(doc, texts)
        _check(doc, chunks)
        assert [c.text for c in chunks] == texts  # exact texts, located in order


def test_split_by_tokens_offsets_overlap_and_coverage(tok):
    chunks = split_by_tokens(DOC, tok, chunk_tokens=16, overlap_tokens=4, source_id="d")
    assert len(chunks) > 3
    _check(DOC, chunks)
    assert all(c.source_id == "d" for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(DOC) if not ch.isspace())
    assert all(b.start < a.end for a, b in pairwise(chunks))  # consecutive chunks overlap
    # edges at word boundaries: no chunk starts or ends inside a word
    for c in chunks:
        assert c.start == 0 or not (DOC[c.start - 1].isalnum() and DOC[c.start].isalnum())
        assert c.end == len(DOC) or not (DOC[c.end - 1].isalnum() and DOC[c.end].isalnum())
        assert len(tok.encode(c.text, add_special_tokens=False)) <= 16 + 1
    no_overlap = split_by_tokens(DOC, tok, chunk_tokens=16, overlap_tokens=0)
    assert all(b.start >= a.end for a, b in pairwise(no_overlap))
    assert "".join(DOC[c.start:c.end] for c in no_overlap).replace(" ", "").replace("\n", "") == \
        DOC.replace(" ", "").replace("\n", "")
    with pytest.raises(ValueError):
        split_by_tokens(DOC, tok, chunk_tokens=8, overlap_tokens=8)


# --- selection logic (a scorer whose ranking is fixed, to check the arithmetic) ---------------------


class FixedScorer:
    """Ranks chunks by given scores; counts calls. Only the selection arithmetic is under test here."""

    def __init__(self, scores):
        self.scores = scores
        self.calls = 0

    options = effective_options = ScoringOptions(candidate_order="as_given", fusion=None)

    def count_tokens(self, text):
        return len(text.split())

    def rank(self, query, passages, top_k=None, first_stage_scores=None):
        self.calls += 1
        order = sorted(range(len(passages)), key=lambda i: (-self.scores[i], i))[:top_k]
        return [RankedPassage(index=i, score=self.scores[i], rank=r, text=passages[i], qrhead_score=self.scores[i])
                for r, i in enumerate(order, start=1)]


def _chunks(lengths):
    doc, out, pos = "", [], 0
    for i, n in enumerate(lengths):
        text = " ".join(f"w{i}" for _ in range(n))
        out.append(Chunk(text, pos, pos + len(text), i))
        doc += text + "\n"
        pos = len(doc)
    return doc, out


def test_top_k_and_document_order():
    _, chunks = _chunks([3, 3, 3, 3, 3])
    fixed = FixedScorer([0.1, 0.9, 0.3, 0.8, 0.2])
    sel = select_chunks(fixed, "q", chunks, top_k=3)
    assert isinstance(sel, ChunkSelection) and fixed.calls == 1
    assert [c.index for c in sel] == [1, 3, 2] and [c.rank for c in sel] == [1, 2, 3]
    assert sel.num_candidates == 5 and sel.tokens == 9
    ordered = select_chunks(fixed, "q", chunks, top_k=3, keep_document_order=True)
    assert [c.index for c in ordered] == [1, 2, 3]
    assert ordered.text("|") == "|".join(chunks[i].text for i in (1, 2, 3))
    assert len(select_chunks(fixed, "q", chunks)) == 5  # default top_k is 5


def test_token_budget_is_greedy_by_score_and_skips_what_does_not_fit():
    _, chunks = _chunks([4, 10, 3, 2, 6])
    fixed = FixedScorer([0.5, 0.9, 0.8, 0.1, 0.7])  # best: 1 (10 tok), 2 (3), 4 (6), 0 (4), 3 (2)
    sel = select_chunks(fixed, "q", chunks, token_budget=16)
    # 1 (10) fits, 2 (3) fits -> 13, 4 (6) does not fit, 0 (4) does not fit, 3 (2) fits -> 15
    assert [c.index for c in sel] == [1, 2, 3]
    assert sel.tokens == 15 and [c.tokens for c in sel] == [10, 3, 2]
    both = select_chunks(fixed, "q", chunks, token_budget=16, top_k=2)
    assert [c.index for c in both] == [1, 2]
    # A counter of the caller's choice (e.g. the generator's tokenizer): characters here.
    by_chars = select_chunks(fixed, "q", chunks, token_budget=20, count_tokens=len)
    assert sum(len(c.text) for c in by_chars) <= 20 and all(c.tokens == len(c.text) for c in by_chars)


def test_token_budget_too_small_returns_nothing_with_a_warning(caplog):
    _, chunks = _chunks([4, 5])
    sel = select_chunks(FixedScorer([0.1, 0.2]), "q", chunks, token_budget=3)
    assert len(sel) == 0 and sel.tokens == 0
    assert "no chunk fits the token budget" in caplog.text


def test_selection_argument_errors():
    _, chunks = _chunks([2, 2])
    fixed = FixedScorer([0.1, 0.2])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            select_chunks(fixed, "q", chunks, top_k=bad)
        with pytest.raises(ValueError):
            select_chunks(fixed, "q", chunks, token_budget=bad)
    with pytest.raises(TypeError):
        select_chunks(fixed, "q", ["a plain string"])
    assert len(select_chunks(fixed, "q", [])) == 0
    with pytest.raises(ValueError, match="query is empty"):
        select_chunks(fixed, " ", [])


def test_token_counter_accepts_tokenizers_and_callables(tok):
    assert token_counter(len)("abc") == 3
    assert token_counter(tok)("hello world") == len(tok.encode("hello world", add_special_tokens=False))
    with pytest.raises(TypeError):
        token_counter(42)


# --- with the real engine (tiny model) ---------------------------------------------------------------


def test_one_rank_call_scores_every_chunk_even_across_windows(scorer, tok, monkeypatch):
    doc = " ".join(DOC for _ in range(3))
    chunks = split_by_tokens(doc, tok, chunk_tokens=40, overlap_tokens=0)
    small = QRHeadScorer.from_model(scorer.model, tok, heads=HEADS, max_context_tokens=256,
                                    candidate_order="as_given")
    real_rank = small.rank
    calls = []

    def counting_rank(query, passages, **kw):
        calls.append(len(passages))
        return real_rank(query, passages, **kw)

    monkeypatch.setattr(small, "rank", counting_rank)
    sel = select_chunks(small, "When was the lighthouse finished?", chunks, top_k=len(chunks))
    assert calls == [len(chunks)]  # one call with all chunks
    assert len({c.window for c in sel}) > 1  # the document did not fit one prompt: several windows
    expected = real_rank("When was the lighthouse finished?", [c.text for c in chunks])
    assert [(c.index, c.score) for c in sel] == [(r.index, r.score) for r in expected]
    for c in sel:
        assert doc[c.start:c.end] == c.text and isinstance(c.score, float)


def test_truncated_chunks_are_flagged_and_keep_their_full_text(scorer, tok):
    chunks = locate_chunks(DOC, [DOC[:120], DOC[120:]])
    short = QRHeadScorer.from_model(scorer.model, tok, heads=HEADS, max_passage_tokens=5)
    sel = select_chunks(short, "lighthouse", chunks, top_k=2)
    assert all(c.truncated for c in sel)
    assert sorted(c.text for c in sel) == sorted(c.text for c in chunks)


def test_chunks_are_laid_out_in_reading_order_by_default(scorer):
    chunks = locate_chunks(DOC, [DOC[:60], DOC[60:140], DOC[140:]])
    texts = [c.text for c in chunks]
    assert scorer.effective_options.candidate_order == "reversed"
    as_given = QRHeadScorer.from_model(scorer.model, scorer.tokenizer, heads=HEADS, candidate_order="as_given")
    sel = select_chunks(scorer, "lighthouse", chunks, top_k=3)
    assert scorer.candidate_order == "auto"  # the caller's scorer is not changed
    expected = dict(enumerate(as_given.score("lighthouse", texts)))
    assert {c.index: c.score for c in sel} == expected
    own = select_chunks(scorer, "lighthouse", chunks, top_k=3, candidate_order=None)
    assert {c.index: c.score for c in own} == dict(enumerate(scorer.score("lighthouse", texts)))
    assert expected != dict(enumerate(scorer.score("lighthouse", texts)))
    with pytest.raises(ValueError, match="candidate_order"):
        select_chunks(scorer, "lighthouse", chunks, candidate_order="random")


def test_fusion_needs_first_stage_scores_for_chunks(scorer):
    chunks = locate_chunks(DOC, [DOC[:60], DOC[60:140], DOC[140:]])
    texts = [c.text for c in chunks]
    fused = QRHeadScorer.from_model(scorer.model, scorer.tokenizer, heads=HEADS, candidate_order="as_given",
                                    fusion="linear", fusion_weight=0.0)
    sel = select_chunks(fused, "lighthouse", chunks, top_k=3, first_stage=None)
    plain = QRHeadScorer.from_model(scorer.model, scorer.tokenizer, heads=HEADS, candidate_order="as_given")
    assert {c.index: c.score for c in sel} == dict(enumerate(plain.score("lighthouse", texts)))
    assert fused.fusion == "linear"
    # by default (first_stage="auto") a fusing scorer gets BM25 over the chunks as its first stage
    from qrhead_integrations.first_stage import bm25_scores

    auto = select_chunks(fused, "lighthouse stones", chunks, top_k=3)
    bm25 = bm25_scores("lighthouse stones", texts)
    assert [c.index for c in auto] == sorted(range(3), key=lambda i: (-bm25[i], i))
    # with first-stage scores the fusion applies (weight 0: the first stage alone decides)
    sel = select_chunks(fused, "lighthouse", chunks, top_k=3, first_stage_scores=[0.1, 0.9, 0.5])
    assert [c.index for c in sel] == [1, 2, 0]


def test_bm25_first_stage_fuses_bm25_over_the_chunks(scorer, caplog):
    """``first_stage="bm25"`` is ``first_stage_scores=<BM25 over the chunks>``: weight 0 gives BM25's order;
    a head set without a recommended fusion is fused linearly (logged); fusion=None is an error."""
    from qrhead_integrations.first_stage import bm25_scores

    chunks = locate_chunks(DOC, [DOC[:60], DOC[60:140], DOC[140:]])
    texts = [c.text for c in chunks]
    query = "When was the lighthouse finished, and what reused its stones?"
    bm25 = bm25_scores(query, texts)
    assert len(bm25) == 3 and len(set(bm25)) == 3 and min(bm25) > 0
    only_bm25 = QRHeadScorer.from_model(scorer.model, scorer.tokenizer, heads=HEADS, fusion="linear",
                                        fusion_weight=0.0)
    sel = select_chunks(only_bm25, query, chunks, top_k=3, first_stage="bm25")
    assert [c.index for c in sel] == sorted(range(3), key=lambda i: -bm25[i])
    # no recommendation (plain head list): linear fusion, QRHead share 0.5, as with explicit scores
    with caplog.at_level("INFO", logger="qrhead_integrations"):
        auto = select_chunks(scorer, query, chunks, top_k=3, first_stage="bm25")
    assert "recommends no fusion" in caplog.text
    linear = scorer.with_options(fusion="linear")
    explicit = select_chunks(linear, query, chunks, top_k=3, first_stage_scores=bm25)
    assert [(c.index, c.score) for c in auto] == [(c.index, c.score) for c in explicit]
    heads_alone = select_chunks(scorer, query, chunks, top_k=3)  # "auto": this head set recommends no fusion
    assert [(c.index, c.score) for c in auto] != [(c.index, c.score) for c in heads_alone]
    assert heads_alone.tokens and [(c.index, c.score) for c in heads_alone] == [
        (c.index, c.score) for c in select_chunks(scorer, query, chunks, top_k=3, first_stage=None)]
    with pytest.raises(ValueError, match="fusion=None"):
        select_chunks(scorer.with_options(fusion=None), query, chunks, first_stage="bm25")
    with pytest.raises(ValueError, match="first_stage must be one of 'auto', 'bm25', 'order' or None"):
        select_chunks(scorer, query, chunks, first_stage="tfidf")
    with pytest.raises(ValueError, match="not both"):
        select_chunks(scorer, query, chunks, first_stage="bm25", first_stage_scores=bm25)
