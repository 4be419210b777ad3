"""select_chunks(trim_to_evidence=N): selected chunks cut to their evidence sentences (plus neighbours),
with exact offsets, under the token budget; select_from_ranking on a ranking computed once."""

from __future__ import annotations

import pytest
from conftest import tiny_model

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.chunks import evidence_pieces, locate_chunks, select_chunks, select_from_ranking
from qrhead_integrations.engine.evidence import Evidence
from qrhead_integrations.engine.ranking import RankedPassage

HEADS = [(1, 0), (2, 1), (3, 3)]

SECTIONS = [
    "The Eddystone Rocks lie south of Plymouth. Winstanley built the first tower in 1698. A storm destroyed it "
    "in 1703. Rudyerd built the second tower. The engineer John Smeaton designed the third tower of granite. "
    "Its upper part was rebuilt on Plymouth Hoe.",
    "Bell Rock stands off the coast of Angus. The engineer Robert Stevenson built it between 1807 and 1810. "
    "It is the oldest surviving sea-washed lighthouse.",
    "Fresnel presented his lens in 1822. It gathered the lamp's light into a beam. The first one was "
    "installed at Cordouan in 1823.",
]
DOC = "\n\n".join(SECTIONS)


@pytest.fixture(scope="module")
def scorer(tok):
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=HEADS)


@pytest.fixture(scope="module")
def chunks():
    return locate_chunks(DOC, SECTIONS, source_id="doc")


def _evidence(chunk, *sentences):
    out = []
    for s in sentences:
        a = chunk.text.index(s)
        out.append(Evidence(a, a + len(s), 0.5, s))
    return tuple(out)


def test_pieces_are_evidence_sentences_with_neighbours(chunks):
    c = chunks[0]
    ev = _evidence(c, "Rudyerd built the second tower.")
    (a, b), = evidence_pieces(c, ev, context=0)
    assert DOC[a:b] == "Rudyerd built the second tower."
    (a, b), = evidence_pieces(c, ev, context=1)
    assert DOC[a:b] == ("A storm destroyed it in 1703. Rudyerd built the second tower. The engineer John Smeaton "
                        "designed the third tower of granite.")
    # two evidence sentences far apart: two pieces; close ones merge into one run
    far = evidence_pieces(c, _evidence(c, "The Eddystone Rocks lie south of Plymouth.",
                                       "Its upper part was rebuilt on Plymouth Hoe."), context=0)
    assert [DOC[a:b] for a, b in far] == ["The Eddystone Rocks lie south of Plymouth.",
                                          "Its upper part was rebuilt on Plymouth Hoe."]
    near = evidence_pieces(c, _evidence(c, "The Eddystone Rocks lie south of Plymouth.",
                                        "A storm destroyed it in 1703."), context=1)
    assert len(near) == 1 and DOC[near[0][0]:near[0][1]].startswith("The Eddystone Rocks")
    assert evidence_pieces(c, (), context=1) == []


class EvidenceScorer:
    """Fixed scores and evidence sentences (what QRHeadScorer.rank(..., evidence=N) returns)."""

    def __init__(self, scores, evidence):
        from qrhead_integrations import ScoringOptions

        self.scores, self.evidence, self.options = scores, evidence, ScoringOptions(candidate_order="as_given", fusion=None)
        self.calls = []

    def count_tokens(self, text):
        return len(text.split())

    def rank(self, query, passages, top_k=None, first_stage_scores=None, evidence=0):
        self.calls.append(evidence)
        order = sorted(range(len(passages)), key=lambda i: -self.scores[i])
        return [RankedPassage(i, self.scores[i], r + 1, passages[i], evidence=self.evidence[i] if evidence else ())
                for r, i in enumerate(order)][:top_k]


def test_trimmed_selection_keeps_offsets_and_fits_more_chunks(chunks):
    ev = [_evidence(chunks[0], "Its upper part was rebuilt on Plymouth Hoe."),
          _evidence(chunks[1], "The engineer Robert Stevenson built it between 1807 and 1810."),
          ()]  # no evidence: the chunk is kept whole
    fixed = EvidenceScorer([0.9, 0.5, 0.1], ev)
    whole = select_chunks(fixed, "q", chunks, token_budget=45, keep_document_order=True)
    assert [c.index for c in whole] == [0] and not whole[0].trimmed and fixed.calls == [0]
    trimmed = select_chunks(fixed, "q", chunks, token_budget=45, keep_document_order=True, trim_to_evidence=1,
                            evidence_context=0)
    assert fixed.calls[-1] == 1  # evidence asked from the scorer
    assert [c.index for c in trimmed] == [0, 1, 2] and [c.trimmed for c in trimmed] == [True, True, False]
    assert trimmed.tokens <= 45 and trimmed.trim_to_evidence == 1
    for c in trimmed:
        assert DOC[c.start:c.end] == c.text
        assert c.chunk_start <= c.start < c.end <= c.chunk_end
        assert (c.chunk_start, c.chunk_end) == (chunks[c.index].start, chunks[c.index].end)
    assert trimmed[0].text == "Its upper part was rebuilt on Plymouth Hoe."
    # best first: pieces follow the chunks' ranks
    best_first = select_chunks(fixed, "q", chunks, token_budget=45, trim_to_evidence=1, evidence_context=0)
    assert [c.rank for c in best_first] == [1, 2, 3]
    # top_k counts chunks, not pieces
    two = select_chunks(fixed, "q", chunks, top_k=2, trim_to_evidence=1)
    assert [c.index for c in two] == [0, 1]


def test_trim_options_are_checked(chunks):
    fixed = EvidenceScorer([0.1, 0.2, 0.3], [(), (), ()])
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="trim_to_evidence"):
            select_chunks(fixed, "q", chunks, trim_to_evidence=bad)
    for bad in (-1, True, 0.5):
        with pytest.raises(ValueError, match="evidence_context"):
            select_chunks(fixed, "q", chunks, trim_to_evidence=1, evidence_context=bad)


def test_real_scorer_trim_and_select_from_ranking(scorer, chunks, tok):
    q = "Which engineer designed the granite tower?"
    sel = select_chunks(scorer, q, chunks, token_budget=60, trim_to_evidence=1, keep_document_order=True,
                        count_tokens=tok)
    assert len(sel) >= 1 and sel.tokens <= 60
    for c in sel:
        assert DOC[c.start:c.end] == c.text and c.tokens == len(tok.encode(c.text, add_special_tokens=False))
    starts = [c.start for c in sel]
    assert starts == sorted(starts)
    # the same selection from a ranking made once (encode, then rank per question)
    enc = scorer.with_options(candidate_order="as_given").encode([c.text for c in chunks], queries=[q])
    again = select_from_ranking(q, chunks, enc.rank(q, evidence=1), token_budget=60, trim_to_evidence=1,
                                keep_document_order=True, count_tokens=tok)
    assert [(c.start, c.end, c.index) for c in again] == [(c.start, c.end, c.index) for c in sel]
    assert [c.score for c in again] == pytest.approx([c.score for c in sel], rel=1e-5, abs=1e-7)


def test_chunk_retrievers_trim_to_evidence(scorer, tok):
    """Both frameworks' chunk retrievers pass trim_to_evidence through: trimmed pieces are new nodes /
    documents with exact offsets into the document, distinct ids, and the whole chunk's offsets in
    metadata (hidden from the LLM in LlamaIndex)."""
    from langchain_core.documents import Document as LCDocument
    from llama_index.core.schema import Document as LIDocument
    from llama_index.core.schema import MetadataMode

    from qrhead_integrations.langchain import QRHeadChunkRetriever as LCChunks
    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadChunkRetriever as LIChunks
    from qrhead_integrations.llama_index import QRHeadRerank

    q = "Which engineer designed the granite tower?"

    from langchain_text_splitters import TextSplitter

    class Sections(TextSplitter):  # one chunk per section, as the test's select_chunks calls use
        def split_text(self, text):
            return text.split("\n\n")

    expected = select_chunks(scorer, q, locate_chunks(DOC, SECTIONS, source_id="doc"), top_k=2, trim_to_evidence=1,
                             evidence_context=0)
    li = LIChunks(LIDocument(text=DOC, id_="doc"), reranker=QRHeadRerank.from_scorer(scorer), splitter=Sections(),
                  top_k=2, trim_to_evidence=1, evidence_context=0)
    nodes = li.retrieve(q)
    assert [(n.node.start_char_idx, n.node.end_char_idx) for n in nodes] == [(c.start, c.end) for c in expected]
    assert len({n.node.node_id for n in nodes}) == len(nodes)
    for n in nodes:
        assert DOC[n.node.start_char_idx:n.node.end_char_idx] == n.node.text
        assert n.node.metadata["qrhead_trimmed"] is True
        assert "qrhead_trimmed" not in n.node.get_content(metadata_mode=MetadataMode.LLM)
    lc = LCChunks(document=LCDocument(page_content=DOC, id="doc"), reranker=QRHeadReranker.from_scorer(scorer, top_n=None),
                  text_splitter=Sections(), k=2, trim_to_evidence=1, evidence_context=0)
    docs = lc.invoke(q)
    assert [(d.metadata["start_index"], d.metadata["end_index"]) for d in docs] == [(c.start, c.end) for c in expected]
    assert all(DOC[d.metadata["start_index"]:d.metadata["end_index"]] == d.page_content for d in docs)
    assert len({d.id for d in docs}) == len(docs)
    with pytest.raises(ValueError):
        LCChunks(document=DOC, trim_to_evidence=0)
    with pytest.raises(ValueError, match="trim_to_evidence"):
        LIChunks(DOC, reranker=QRHeadRerank.from_scorer(scorer), trim_to_evidence=0)
