"""SelectionOptions: the one declaration of the chunk-selection settings. Bad values fail with clear errors,
both frameworks' chunk retrievers expose exactly its settings with its defaults (so the declarations cannot
drift), their default results equal select_chunks', and docs/chunk_selection.md holds its generated table."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from conftest import TINY_HEADS, tiny_model

from qrhead_integrations import QRHeadScorer, SelectionOptions
from qrhead_integrations.chunks import locate_chunks, select_chunks, select_from_ranking
from qrhead_integrations.selection_options import SELECTION_NAMES, selection_specs

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.retrievers import BaseRetriever
from langchain_text_splitters import TextSplitter

from qrhead_integrations.langchain import QRHeadChunkRetriever as LCChunks
from qrhead_integrations.langchain import QRHeadReranker
from qrhead_integrations.langchain import select_document_chunks as lc_select
from qrhead_integrations.llama_index import QRHeadChunkRetriever as LIChunks
from qrhead_integrations.llama_index import QRHeadRerank
from qrhead_integrations.llama_index import select_document_chunks as li_select

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [
    "The Eddystone Rocks lie south of Plymouth. John Smeaton designed the third tower of granite.",
    "Bell Rock stands off the coast of Angus. Robert Stevenson built it between 1807 and 1810.",
    "Fresnel presented his lens in 1822. The first one was installed at Cordouan in 1823.",
    "The Pharos of Alexandria was one of the Seven Wonders. An earthquake toppled it.",
    "Hook Head lighthouse in Ireland has guided ships for eight hundred years.",
    "Cape Hatteras lighthouse was moved inland in 1999 because the shore was eroding.",
]
DOC = "\n\n".join(SECTIONS)
QUERY = "Who designed the granite tower?"
#: Each bad value and the words its error must contain.
BAD = [
    ("top_k", 0, "top_k must be a positive integer or None"), ("top_k", True, "top_k"), ("top_k", 1.5, "top_k"),
    ("token_budget", -1, "token_budget must be a positive integer or None"), ("token_budget", "9", "token_budget"),
    ("keep_document_order", "yes", "keep_document_order must be True or False"),
    ("candidate_order", "random", "candidate_order must be one of 'reversed', 'as_given', 'both', 'ranked' or None"),
    ("candidate_order", "auto", "candidate_order"),
    ("trim_to_evidence", 0, "trim_to_evidence must be a positive number of sentences or None"),
    ("evidence_context", -1, "evidence_context must be a number of sentences >= 0"),
    ("evidence_context", None, "evidence_context"),
    ("first_stage", "tfidf", "first_stage must be one of 'auto', 'bm25', 'order' or None"),
]
#: The retrievers' constructor arguments that are not selection settings.
LC_OTHER = set(BaseRetriever.model_fields) | {"document", "reranker", "text_splitter"}
LI_OTHER = {"document", "reranker", "splitter", "callback_manager", "verbose", "options"}


class Sections(TextSplitter):
    """One chunk per section (has split_text, so LlamaIndex's retriever takes it too)."""

    def split_text(self, text):
        return text.split("\n\n")


@pytest.fixture(scope="module")
def scorer(tok):
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=TINY_HEADS)


# --- the declaration itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "bad", "words"), BAD)
def test_bad_values_fail_with_the_setting_named(name, bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        SelectionOptions(**{name: bad})
    with pytest.raises(ValueError, match=name):
        SelectionOptions().replace(**{name: bad})


def test_unknown_names_live_objects_and_immutability():
    with pytest.raises(TypeError, match="unknown chunk-selection setting.*top_n.*valid: top_k"):
        SelectionOptions.build(top_n=3)
    with pytest.raises(TypeError, match="count_tokens must be a callable"):
        SelectionOptions(count_tokens=42)
    opts = SelectionOptions(top_k=3, count_tokens=len, first_stage=None)
    assert opts.to_dict() == {**SelectionOptions().to_dict(), "top_k": 3, "first_stage": None}
    assert "count_tokens" not in opts.to_dict()  # a live object is not serialised
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.top_k = 4
    assert opts.replace(top_k=4).top_k == 4 and opts.top_k == 3
    assert SelectionOptions.build(opts, token_budget=9) == SelectionOptions(top_k=3, count_tokens=len,
                                                                            first_stage=None, token_budget=9)


# --- the adapters expose exactly these settings --------------------------------------------------------------


def test_langchain_fields_are_the_settings_with_their_defaults():
    fields = LCChunks.model_fields
    names = {"k" if n == "top_k" else n for n in SELECTION_NAMES}
    assert set(fields) - LC_OTHER == names
    for spec in selection_specs():
        f = fields["k" if spec.name == "top_k" else spec.name]
        assert f.default == spec.default and f.description == spec.description
    assert fields["count_tokens"].exclude and not fields["k"].exclude
    retriever = LCChunks(document=DOC)
    assert retriever.selection_options == SelectionOptions()
    assert LCChunks(document=DOC, top_k=2).k == 2 == LCChunks(document=DOC, k=2).top_k  # LangChain's name, and ours


def test_llama_index_settings_are_the_settings_with_their_defaults():
    params = inspect.signature(LIChunks).parameters
    assert set(params) - LI_OTHER == set(SELECTION_NAMES)
    retriever = LIChunks(DOC, reranker=QRHeadRerank())
    assert retriever.selection_options == SelectionOptions()
    for spec in selection_specs():
        assert params[spec.name].default == spec.default == getattr(retriever, spec.name)
    retriever.top_k = 3  # attributes stay assignable, and validated
    assert retriever.selection_options == SelectionOptions(top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        retriever.top_k = 0
    with pytest.raises(TypeError, match="unknown chunk-selection setting"):
        LIChunks(DOC, top_n=3)


@pytest.mark.parametrize("func", [select_chunks, select_from_ranking, lc_select, li_select])
def test_convenience_functions_list_every_setting(func):
    params = inspect.signature(func).parameters
    for spec in selection_specs():
        assert params[spec.name].default == spec.default
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize(("name", "bad", "words"), BAD)
def test_adapters_reject_what_the_options_reject(name, bad, words):
    field = "k" if name == "top_k" else name
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        LCChunks(document=DOC, **{field: bad})
    with pytest.raises(ValueError, match=name):
        LIChunks(DOC, reranker=QRHeadRerank(), **{name: bad})


# --- one result at every door --------------------------------------------------------------------------------


def _spans(selection):
    return [(c.start, c.end, round(c.score, 6)) for c in selection]


def test_default_settings_give_select_chunks_results_everywhere(scorer):
    expected = _spans(select_chunks(scorer, QUERY, locate_chunks(DOC, SECTIONS)))
    assert len(expected) == 5  # the default top_k

    li = LIChunks(DOC, reranker=QRHeadRerank.from_scorer(scorer), splitter=Sections())
    assert _spans(li.select(QUERY)) == expected
    assert [(n.node.start_char_idx, n.node.end_char_idx, round(n.score, 6)) for n in li.retrieve(QUERY)] == expected
    assert [_spans(s) for s in li.select_many([QUERY, "Who built Bell Rock?"])][0] == expected

    lc = LCChunks(document=DOC, reranker=QRHeadReranker.from_scorer(scorer, top_n=None), text_splitter=Sections())
    assert _spans(lc.select(QUERY)) == expected
    docs = lc.invoke(QUERY)
    assert [(d.metadata["start_index"], d.metadata["end_index"], round(d.metadata["relevance_score"], 6))
            for d in docs] == expected
    assert lc.batch([QUERY, "Who built Bell Rock?"])[0] == docs

    two = _spans(select_chunks(scorer, QUERY, locate_chunks(DOC, SECTIONS), options=SelectionOptions(top_k=2)))
    assert two == expected[:2] == _spans(lc.select(QUERY, k=2))
    assert [(n.node.start_char_idx, n.node.end_char_idx, round(n.score, 6))
            for n in li_select(DOC, QUERY, reranker=QRHeadRerank.from_scorer(scorer), splitter=Sections(),
                               top_k=2)] == two
    assert [(d.metadata["start_index"], d.metadata["end_index"], round(d.metadata["relevance_score"], 6))
            for d in lc_select(DOC, QUERY, reranker=QRHeadReranker.from_scorer(scorer, top_n=None),
                               text_splitter=Sections(), top_k=2)] == two


# --- the generated docs table ---------------------------------------------------------------------------------


def test_chunk_selection_doc_holds_the_current_table():
    from qrhead_integrations.adapters.docs_tables import SELECTION_DOC, SELECTION_TABLE_START, render_selection_options

    text = (REPO / SELECTION_DOC).read_text(encoding="utf-8")
    assert SELECTION_TABLE_START in text
    assert render_selection_options(text) == text, "run `python -m qrhead_integrations.adapters.docs_tables` to update it"
    for name in SELECTION_NAMES:
        assert f"| `{name}` |" in text
