"""The LangChain integration with real LangChain classes (vector store retriever, LCEL chains, text
splitters, and langchain-classic's compression retriever and pipeline where installed).

The scorer is a tiny random-weight Llama saved to a local folder; the LLM is langchain-core's FakeListLLM.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import load_tokenizer, tiny_model

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_text_splitters")

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_text_splitters import CharacterTextSplitter, RecursiveCharacterTextSplitter
from pydantic import ValidationError

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.langchain import (
    QRHeadChunkRetriever,
    QRHeadReranker,
    QRHeadRerankRetriever,
    select_document_chunks,
)

HEADS = [(1, 0), (2, 1), (3, 3)]
TEXTS = [
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Honey bees tell their hive mates where flowers are with a waggle dance.",
    "The Amazon carries more water to the sea than any other river.",
    "Mount Everest rises 8,849 metres above sea level.",
    "Insulin, a hormone made by the pancreas, lowers blood sugar.",
    "Jupiter is the largest planet in the Solar System.",
]
QUERY = "Which tower was built for the 1889 World's Fair?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = load_tokenizer("smollm2")
    folder = tmp_path_factory.mktemp("tiny-llama-lc")
    tiny_model("llama", tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def reranker(model_dir):
    return QRHeadReranker(model=model_dir, heads=HEADS)


def make_docs():
    return [Document(page_content=t, id=f"d{i}", metadata={"source": f"s{i}", "tags": ["x"]})
            for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def store():
    vs = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    vs.add_documents(make_docs())
    return vs


class Recorder(BaseCallbackHandler):
    def __init__(self):
        self.events = []

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("start", kwargs.get("name"), run_id, parent_run_id, inputs))

    def on_chain_end(self, outputs, *, run_id, **kwargs):
        self.events.append(("end", None, run_id, None, outputs))

    def on_chain_error(self, error, *, run_id, **kwargs):
        self.events.append(("error", None, run_id, None, error))

    def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("retriever_start", kwargs.get("name"), run_id, parent_run_id, query))

    def named(self, name):
        return [e for e in self.events if e[0] == "start" and e[1] == name]


# --- the compressor contract ---------------------------------------------------------------------------


def test_new_documents_ids_kept_metadata_copied_float_scores(reranker):
    docs = make_docs()
    before = [d.model_dump() for d in docs]
    out = reranker.compress_documents(docs, QUERY)
    assert [d.model_dump() for d in docs] == before
    assert len(out) == 3  # top_n defaults to 3, like other LangChain re-rankers
    by_id = {d.id: d for d in docs}
    scores = [d.metadata["relevance_score"] for d in out]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
    for d in out:
        original = by_id[d.id]
        assert d is not original and d.metadata is not original.metadata
        assert d.page_content == original.page_content and d.metadata["source"] == original.metadata["source"]
    out[0].metadata["tags"].append("changed later")  # nested values are copies too
    out[0].metadata["new"] = 1
    assert [d.model_dump() for d in docs] == before


def test_scores_are_the_engines_and_top_n(reranker, model_dir):
    docs = make_docs()
    reranker.top_n = None
    out = reranker.compress_documents(docs, QUERY)
    expected = reranker.scorer.rank(QUERY, TEXTS)
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [(f"d{r.index}", r.score) for r in expected]
    reranker.top_n = 1
    assert [d.id for d in reranker.compress_documents(docs, QUERY)] == [out[0].id]


def test_first_stage_scores_and_order_reach_fusion(model_dir):
    docs = make_docs()
    for d, s in zip(docs, [0.2, 0.9, 0.5, 0.1, 0.7, 0.3]):
        d.metadata["score"] = s
    linear = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, fusion="linear", fusion_weight=0.0,
                            first_stage_score_key="score")
    out = linear.compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["d1", "d4", "d2", "d5", "d0", "d3"]
    assert all(type(d.metadata["qrhead_score"]) is float for d in out)
    rrf = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, fusion="rrf", fusion_weight=0.0)
    reversed_docs = docs[::-1]
    assert [d.id for d in rrf.compress_documents(reversed_docs, QUERY)] == [d.id for d in reversed_docs]


def test_empty_errors_and_forbidden_extras(reranker, model_dir):
    assert reranker.compress_documents([], QUERY) == []
    with pytest.raises(ValueError, match="query is empty"):
        reranker.compress_documents(make_docs(), " ")
    with pytest.raises(ValidationError):
        QRHeadReranker(model=model_dir, heads=HEADS, top_k=3)  # a typo is an error, not ignored
    for bad in ({"top_n": 0}, {"candidate_order": "x"}, {"fusion": "max"}, {"fusion_weight": -0.1}):
        with pytest.raises(ValidationError):
            QRHeadReranker(model=model_dir, heads=HEADS, **bad)


def test_truncation_is_flagged(model_dir):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, max_passage_tokens=4, top_n=None)
    out = rr.compress_documents(make_docs(), QUERY)
    assert all(d.metadata["qrhead_truncated"] is True for d in out)
    assert sorted(d.page_content for d in out) == sorted(TEXTS)


def test_settings_round_trip_and_shared_model(model_dir):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, candidate_order="as_given", calibrate=False,
                        fusion="rrf", max_passage_tokens=50, first_stage_score_key="score", device="cpu")
    data = rr.model_dump()
    again = QRHeadReranker.model_validate_json(rr.model_dump_json())
    assert again.model_dump() == data
    docs = make_docs()
    assert rr.compress_documents(docs, QUERY) == again.compress_documents(docs, QUERY)
    assert rr.scorer.model is again.scorer.model and rr.scorer.calibrate is False


def test_from_scorer_shares_weights(model_dir):
    tok = load_tokenizer("smollm2")
    model = tiny_model("llama", tok, seed=5)
    scorer = QRHeadScorer.from_model(model, tok, heads=HEADS)
    rr = QRHeadReranker.from_scorer(scorer, top_n=2)
    assert rr.scorer is scorer and rr.heads == HEADS
    assert len(rr.compress_documents(make_docs(), QUERY)) == 2
    rr.fusion = "rrf"
    assert rr.scorer is not scorer and rr.scorer.model is model


def test_callbacks_see_the_rerank_run(reranker):
    rec = Recorder()
    out = reranker.compress_documents(make_docs(), QUERY, callbacks=[rec])
    (start,) = rec.named("QRHeadReranker")
    assert start[4]["query"] == QUERY and len(start[4]["documents"]) == len(TEXTS)
    end = [e for e in rec.events if e[0] == "end" and e[2] == start[2]]
    assert end and end[0][4]["documents"] == list(out)
    rec2 = Recorder()
    with pytest.raises(ValueError):
        reranker.compress_documents(make_docs(), "", callbacks=[rec2])
    assert [e[0] for e in rec2.events] == ["start", "error"]


def test_async_runs_off_the_loop_with_async_callbacks(reranker, monkeypatch):
    scorer = reranker.scorer
    real_rank = scorer.rank
    released = threading.Event()
    seen = []

    class AsyncRecorder(AsyncCallbackHandler):
        async def on_chain_start(self, serialized, inputs, *, run_id, **kwargs):
            seen.append(("start", kwargs.get("name")))

        async def on_chain_end(self, outputs, *, run_id, **kwargs):
            seen.append(("end", len(outputs["documents"])))

    def gated_rank(*args, **kwargs):
        if not released.wait(timeout=20):
            raise AssertionError("the event loop was blocked while scoring")
        return real_rank(*args, **kwargs)

    monkeypatch.setattr(scorer, "rank", gated_rank)

    async def main():
        async def release():
            await asyncio.sleep(0.05)
            released.set()

        out, _ = await asyncio.gather(
            reranker.acompress_documents(make_docs(), QUERY, callbacks=[AsyncRecorder()]), release())
        return out

    out = asyncio.run(main())
    assert len(out) == 3 and seen == [("start", "QRHeadReranker"), ("end", 3)]


# --- in LangChain pipelines -------------------------------------------------------------------------------


def _chain(retriever, llm):
    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}\nAnswer:")

    def fmt(docs):
        return "\n".join(d.page_content for d in docs)

    return {"context": retriever | fmt, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()


def test_rerank_retriever_in_an_lcel_chain(store, reranker):
    retriever = QRHeadRerankRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 5}), reranker=reranker)
    docs = retriever.invoke(QUERY)
    assert len(docs) == 3 and all(type(d.metadata["relevance_score"]) is float for d in docs)
    first_stage = {d.id for d in store.as_retriever(search_kwargs={"k": 5}).invoke(QUERY)}
    assert {d.id for d in docs} <= first_stage
    llm = FakeListLLM(responses=["Paris, 1889."])
    rec = Recorder()
    answer = _chain(retriever, llm).invoke(QUERY, config={"callbacks": [rec]})
    assert answer == "Paris, 1889."
    # the re-rank run is a child of the retriever run in the trace
    retriever_runs = {e[2] for e in rec.events if e[0] == "retriever_start"}
    (rerank_run,) = rec.named("QRHeadReranker")
    assert rerank_run[3] in retriever_runs
    assert asyncio.run(retriever.ainvoke(QUERY)) == docs
    # k is the number of results (LangChain's convention), at construction and per call
    two = QRHeadRerankRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 5}), reranker=reranker, k=2)
    assert [d.id for d in two.invoke(QUERY)] == [d.id for d in docs[:2]]
    assert [d.id for d in retriever.invoke(QUERY, k=4)][:3] == [d.id for d in docs]
    with pytest.raises(ValidationError):
        QRHeadRerankRetriever(base_retriever=store.as_retriever(), reranker=reranker, top_k=3)


def test_contextual_compression_retriever_and_pipeline(store, reranker):
    classic = pytest.importorskip("langchain_classic.retrievers")
    from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline

    compression = classic.ContextualCompressionRetriever(
        base_compressor=reranker, base_retriever=store.as_retriever(search_kwargs={"k": 5}))
    docs = compression.invoke(QUERY)
    assert len(docs) == 3 and all("relevance_score" in d.metadata for d in docs)
    assert asyncio.run(compression.ainvoke(QUERY)) == docs
    splitter = CharacterTextSplitter(separator=" ", chunk_size=30, chunk_overlap=0, add_start_index=True)
    pipeline = DocumentCompressorPipeline(transformers=[splitter, reranker])
    long_docs = [Document(page_content=" ".join(TEXTS[:3]), id="long", metadata={"source": "all"})]
    pieces = pipeline.compress_documents(long_docs, QUERY)
    assert len(pieces) == 3
    for d in pieces:
        start = d.metadata["start_index"]
        assert long_docs[0].page_content[start:start + len(d.page_content)] == d.page_content
        assert d.metadata["source"] == "all" and type(d.metadata["relevance_score"]) is float


# --- chunks of one long document ---------------------------------------------------------------------------

LONG = "\n\n".join(
    f"Section {i}. " + " ".join(TEXTS[(i + j) % len(TEXTS)] for j in range(3)) for i in range(12)
) + "\n\nSection 0. " + " ".join(TEXTS[:3])


@pytest.mark.parametrize("kind", ["chars", "hf-tokens"])
def test_chunk_retriever_offsets(model_dir, kind):
    tok = load_tokenizer("smollm2")
    if kind == "chars":
        splitter = RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40)
    else:
        splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tok, chunk_size=48, chunk_overlap=8)
    doc = Document(page_content=LONG, id="long-doc", metadata={"title": "Facts"})
    retriever = QRHeadChunkRetriever(document=doc, reranker=QRHeadReranker(model=model_dir, heads=HEADS),
                                     text_splitter=splitter, top_k=4)
    assert len(retriever.chunks) > 6 and all(LONG[c.start:c.end] == c.text for c in retriever.chunks)
    out = retriever.invoke(QUERY)
    assert len(out) == 4
    for d in out:
        m = d.metadata
        assert LONG[m["start_index"]:m["end_index"]] == d.page_content
        assert m["source_id"] == "long-doc" and m["title"] == "Facts" and d.id == f"long-doc-chunk-{m['chunk_index']}"
        assert type(m["relevance_score"]) is float
    assert doc.metadata == {"title": "Facts"}


def test_chunk_retriever_budget_order_chain_and_async(model_dir):
    tok = load_tokenizer("smollm2")
    retriever = QRHeadChunkRetriever(
        document=LONG, reranker=QRHeadReranker(model=model_dir, heads=HEADS),
        text_splitter=RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40),
        token_budget=120, keep_document_order=True, count_tokens=tok)
    sel = retriever.select(QUERY)
    assert 0 < sel.tokens <= 120
    docs = retriever.invoke(QUERY)
    assert [d.metadata["start_index"] for d in docs] == sorted(d.metadata["start_index"] for d in docs)
    assert [d.metadata["start_index"] for d in docs] == [c.start for c in sel]
    assert all(d.id is None for d in docs)  # the source had no id
    answer = _chain(retriever, FakeListLLM(responses=["1889"])).invoke(QUERY)
    assert answer == "1889"
    assert asyncio.run(retriever.ainvoke(QUERY)) == docs
    assert len(select_document_chunks(LONG, QUERY, reranker=QRHeadReranker(model=model_dir, heads=HEADS),
                                      top_k=2)) == 2
