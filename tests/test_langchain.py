"""The LangChain integration with real LangChain classes (vector store retriever, LCEL chains, text
splitters, and langchain-classic's compression retriever and pipeline where installed).

The scorer is a tiny random-weight Llama saved to a local folder; the LLM is langchain-core's FakeListLLM.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import threading

import pytest
from conftest import FACT_QUERY as QUERY
from conftest import FACTS as TEXTS
from conftest import TINY_HEADS as HEADS
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
    # the input order is a ranking only when asked for (first_stage="order")
    rrf = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, fusion="rrf", fusion_weight=0.0,
                         first_stage="order")
    reversed_docs = docs[::-1]
    assert [d.id for d in rrf.compress_documents(reversed_docs, QUERY)] == [d.id for d in reversed_docs]
    # by default an explicit fusion without scores fuses with BM25 over the documents, in any order
    bm25 = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, fusion="rrf", fusion_weight=0.0)
    scores = {d.id: d.metadata["relevance_score"] for d in bm25.compress_documents(docs, QUERY)}
    assert {d.id: d.metadata["relevance_score"] for d in bm25.compress_documents(reversed_docs, QUERY)} == scores
    assert len(set(scores.values())) > 1


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


# --- number of results, first-stage depth ------------------------------------------------------------------


def test_k_is_the_number_of_results_and_fetch_k_the_first_stage_depth(store, reranker):
    base = store.as_retriever()  # the vector store retriever takes k per call (default 4)
    retriever = QRHeadRerankRetriever(base_retriever=base, reranker=reranker, k=3, fetch_k=2)
    top2 = {d.id for d in base.invoke(QUERY, k=2)}
    docs = retriever.invoke(QUERY)
    assert len(docs) == 2 and {d.id for d in docs} == top2  # only two candidates were fetched
    assert len(retriever.invoke(QUERY, fetch_k=6)) == 3
    assert len(retriever.invoke(QUERY, fetch_k=6, k=5)) == 5
    assert len(retriever.invoke(QUERY, k=1)) == 1  # k per call is the number of results, not the base's k
    assert len(QRHeadRerankRetriever(base_retriever=base, reranker=reranker).invoke(QUERY)) == 3  # top_n
    # a plain runnable as the first stage gets no k: its output is cut to fetch_k
    from langchain_core.runnables import RunnableLambda

    lam = QRHeadRerankRetriever(base_retriever=RunnableLambda(lambda q: make_docs()), reranker=reranker, fetch_k=2)
    assert {d.id for d in lam.invoke(QUERY, k=5)} == {"d0", "d1"}
    for bad in ({"k": 0}, {"fetch_k": 0}, {"k": True}):
        with pytest.raises(ValueError):
            retriever.invoke(QUERY, **bad)
        with pytest.raises(ValidationError):
            QRHeadRerankRetriever(base_retriever=base, reranker=reranker, **bad)


def test_chunk_retriever_k_per_call(model_dir):
    retriever = QRHeadChunkRetriever(document=LONG, reranker=QRHeadReranker(model=model_dir, heads=HEADS),
                                     text_splitter=RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40))
    assert len(retriever.invoke(QUERY)) == 5  # the default
    assert len(retriever.invoke(QUERY, k=1)) == 1 and len(retriever.invoke(QUERY, k=3)) == 3
    assert len(asyncio.run(retriever.ainvoke(QUERY, k=2))) == 2
    with pytest.raises(ValueError):
        retriever.invoke(QUERY, k=0)


# --- several queries at once ----------------------------------------------------------------------------------

QUERIES = [QUERY, "How do honey bees find flowers?", "Which planet is the largest?",
           "What does insulin do in the body?"]


class CountCalls:
    """Counts a scorer's encode / rank calls (the real methods run)."""

    def __init__(self, scorer, monkeypatch):
        self.calls = {"encode": 0, "rank": 0}
        for name in self.calls:
            real = getattr(scorer, name)

            def counted(*args, _real=real, _name=name, **kwargs):
                self.calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(scorer, name, counted)


def _same_docs_retriever(reranker, **kw):
    from langchain_core.runnables import RunnableLambda

    return QRHeadRerankRetriever(base_retriever=RunnableLambda(lambda q: make_docs()), reranker=reranker, **kw)


def test_rerank_retriever_batch_shares_one_encoding_and_equals_invoke(reranker, monkeypatch):
    retriever = _same_docs_retriever(reranker, k=4)
    single = [retriever.invoke(q) for q in QUERIES]
    counter = CountCalls(reranker.scorer, monkeypatch)
    batched = retriever.batch(QUERIES)
    assert batched == single  # documents, order, metadata and scores: exactly equal
    assert counter.calls == {"encode": 1, "rank": 0}  # one encoding for the four questions
    assert asyncio.run(retriever.abatch(QUERIES)) == single
    assert retriever.batch(QUERIES, k=2) == [retriever.invoke(q, k=2) for q in QUERIES]


def test_rerank_retriever_batch_with_a_real_first_stage(store, reranker):
    # the vector store returns each question's own candidates (other documents, other orders): no sharing,
    # the same results as one invoke per question
    retriever = QRHeadRerankRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 4}),
                                      reranker=reranker, fetch_k=3)
    assert retriever.batch(QUERIES, config={"max_concurrency": 2}) == [retriever.invoke(q) for q in QUERIES]
    assert asyncio.run(retriever.abatch(QUERIES, config={"max_concurrency": 1})) == [
        asyncio.run(retriever.ainvoke(q)) for q in QUERIES]


def test_batch_callbacks_config_per_input_and_errors(reranker):
    retriever = _same_docs_retriever(reranker)
    recorders = [Recorder() for _ in QUERIES]
    configs = [{"callbacks": [r], "run_name": f"run{i}", "tags": [f"t{i}"]} for i, r in enumerate(recorders)]
    out = retriever.batch(QUERIES, configs)
    for i, rec in enumerate(recorders):
        (start,) = [e for e in rec.events if e[0] == "retriever_start" and e[1] == f"run{i}"]
        (rerank_run,) = rec.named("QRHeadReranker")
        assert rerank_run[3] == start[2] and rerank_run[4]["query"] == QUERIES[i]  # child of its own run
        assert [e for e in rec.events if e[0] == "end" and e[2] == rerank_run[2]][0][4]["documents"] == out[i]
    # an invalid input: in place with return_exceptions, raised without; the other inputs are unaffected
    rec = Recorder()
    mixed = retriever.batch([QUERIES[0], " ", QUERIES[1]], {"callbacks": [rec]}, return_exceptions=True)
    assert isinstance(mixed[1], ValueError) and mixed[0] == out[0] and mixed[2] == out[1]
    assert [e[0] for e in rec.events].count("error") == 1  # the failed re-rank run
    with pytest.raises(ValueError, match="query is empty"):
        retriever.batch([QUERIES[0], " "])
    with pytest.raises(ValueError, match="query is empty"):
        asyncio.run(retriever.abatch([QUERIES[0], " "]))
    bad_k = retriever.batch(QUERIES[:2], return_exceptions=True, k=0)
    assert all(isinstance(e, ValueError) for e in bad_k)
    assert retriever.batch([]) == [] and retriever.batch([QUERY]) == [retriever.invoke(QUERY)]
    # inside an LCEL chain, the chain's batch reaches the override with one config per input
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tracers.context import collect_runs

    chain = retriever | RunnableLambda(lambda docs: [d.id for d in docs])
    with collect_runs() as cb:
        ids = chain.batch(QUERIES)
    assert ids == [[d.id for d in docs] for docs in out]
    for run in cb.traced_runs:
        (child,) = [c for c in run.child_runs if c.run_type == "retriever"]
        assert [c.name for c in child.child_runs] == ["RunnableLambda", "QRHeadReranker"]


def test_chunk_retriever_batch_equals_invoke(model_dir):
    rr = QRHeadReranker(model=model_dir, heads=HEADS)
    for kwargs in ({"k": 3}, {"token_budget": 90, "keep_document_order": True}, {"k": 3, "first_stage": "bm25"}):
        retriever = QRHeadChunkRetriever(document=Document(page_content=LONG, id="long"), reranker=rr,
                                         text_splitter=RecursiveCharacterTextSplitter(chunk_size=200,
                                                                                      chunk_overlap=40),
                                         **kwargs)
        single = [retriever.invoke(q) for q in QUERIES]
        assert retriever.batch(QUERIES) == single
        assert asyncio.run(retriever.abatch(QUERIES)) == single
        assert retriever.batch(QUERIES, k=2) == [retriever.invoke(q, k=2) for q in QUERIES]
        assert [list(s) for s in retriever.select_many(QUERIES)] == [list(retriever.select(q)) for q in QUERIES]
    rec = Recorder()
    out = retriever.batch([QUERY, ""], {"callbacks": [rec]}, return_exceptions=True)
    assert isinstance(out[1], ValueError) and out[0] == single[0]
    assert sum(e[0] == "retriever_start" for e in rec.events) == 2


def test_chunk_batch_reads_the_document_once(model_dir, monkeypatch):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, candidate_order="as_given")  # the selection's order
    retriever = QRHeadChunkRetriever(document=LONG, reranker=rr, k=2,
                                     text_splitter=RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40))
    counter = CountCalls(rr.scorer, monkeypatch)
    retriever.batch(QUERIES)
    assert counter.calls == {"encode": 1, "rank": 0}
    # with BM25 over the chunks as the first stage too (the shared encoding takes the first-stage scores)
    fused = QRHeadReranker(model=model_dir, heads=HEADS, candidate_order="as_given", fusion="linear")
    retriever = QRHeadChunkRetriever(document=LONG, reranker=fused, k=2, first_stage="bm25",
                                     text_splitter=RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40))
    counter = CountCalls(fused.scorer, monkeypatch)
    out = retriever.batch(QUERIES)
    assert counter.calls == {"encode": 1, "rank": 0}
    assert out == [retriever.invoke(q) for q in QUERIES]
    assert out != [QRHeadChunkRetriever(document=LONG, reranker=fused, k=2, text_splitter=retriever.text_splitter,
                                        first_stage=None).invoke(q) for q in QUERIES]
    assert out == [QRHeadChunkRetriever(document=LONG, reranker=fused, k=2, text_splitter=retriever.text_splitter
                                        ).invoke(q) for q in QUERIES]  # default "auto": this reranker fuses
    assert QRHeadChunkRetriever.model_validate(retriever.model_dump()).first_stage == "bm25"
    with pytest.raises(ValidationError):
        QRHeadChunkRetriever(document=LONG, first_stage="tfidf")


def test_rank_many_groups_identical_candidates(reranker):
    docs = make_docs()
    other = docs[::-1]
    queries = [QUERY, QUERIES[1], QUERIES[2]]
    per_query = [docs, other, docs]
    out = reranker.rank_many(queries, per_query, top_n=None)
    assert out == [reranker.rank(q, d, top_n=None) for q, d in zip(queries, per_query)]
    assert isinstance(reranker.rank_many([QUERY, " "], [docs, docs], return_exceptions=True)[1], ValueError)
    assert reranker.rank_many([QUERY], [[]]) == [[]]
    with pytest.raises(ValueError):
        reranker.rank_many([QUERY, QUERY], [docs])


def test_batch_equals_invoke_for_every_scoring_variant(model_dir):
    """Fusion with first-stage scores, 'both' placements and truncation: still exactly the single calls."""
    docs = make_docs()
    for d, s in zip(docs, [0.2, 0.9, 0.5, 0.1, 0.7, 0.3]):
        d.metadata["score"] = s
    for options in ({"fusion": "linear", "first_stage_score_key": "score"}, {"candidate_order": "both"},
                    {"max_passage_tokens": 6}, {"relative_score_threshold": 0.5}):
        rr = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, **options)
        assert rr.rank_many(QUERIES, [docs] * len(QUERIES)) == [rr.rank(q, docs) for q in QUERIES]


def test_windowed_candidates_are_scored_query_by_query(model_dir, monkeypatch):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, max_context_tokens=120)
    docs = make_docs()
    counter = CountCalls(rr.scorer, monkeypatch)
    out = rr.rank_many(QUERIES, [docs] * len(QUERIES))
    assert counter.calls["rank"] == len(QUERIES)  # windows: exact single calls instead of a shared encoding
    monkeypatch.undo()
    assert out == [rr.rank(q, docs) for q in QUERIES]


# --- cut-offs -----------------------------------------------------------------------------------------------


def test_score_thresholds(model_dir):
    docs = make_docs()
    everything = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None).compress_documents(docs, QUERY)
    scores = [d.metadata["relevance_score"] for d in everything]
    absolute = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, score_threshold=scores[2])
    assert absolute.compress_documents(docs, QUERY) == everything[:3]
    hi, lo = max(scores), min(scores)
    keep = [d for d in everything if (d.metadata["relevance_score"] - lo) / (hi - lo) >= 0.5]
    relative = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, relative_score_threshold=0.5)
    assert relative.compress_documents(docs, QUERY) == keep and 1 <= len(keep) < len(docs)
    capped = QRHeadReranker(model=model_dir, heads=HEADS, top_n=1, relative_score_threshold=0.0)
    assert capped.compress_documents(docs, QUERY) == everything[:1]  # top_n still applies
    with pytest.raises(ValidationError):
        QRHeadReranker(model=model_dir, relative_score_threshold=1.5)


def test_chunk_retriever_thresholds_reach_the_selection(model_dir):
    splitter = RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40)
    plain = QRHeadChunkRetriever(document=LONG, text_splitter=splitter, k=100,
                                 reranker=QRHeadReranker(model=model_dir, heads=HEADS))
    scores = [d.metadata["relevance_score"] for d in plain.invoke(QUERY)]
    hi, lo = max(scores), min(scores)
    expected = sum((s - lo) / (hi - lo) >= 0.6 for s in scores)
    cut = QRHeadChunkRetriever(document=LONG, text_splitter=splitter, k=100,
                               reranker=QRHeadReranker(model=model_dir, heads=HEADS, relative_score_threshold=0.6))
    docs = cut.invoke(QUERY)
    assert len(docs) == expected < len(scores)
    assert cut.batch([QUERY, QUERIES[1]])[0] == docs
    absolute = QRHeadChunkRetriever(document=LONG, text_splitter=splitter, k=100,
                                    reranker=QRHeadReranker(model=model_dir, heads=HEADS, score_threshold=scores[1]))
    assert len(absolute.invoke(QUERY)) == 2


# --- settings: loader options, serialisation ------------------------------------------------------------------

LOADER = {"device_map": {"": "cpu"}, "model_kwargs": {"quantization_config": {"load_in_8bit": True}},
          "revision": "v1.0", "trust_remote_code": True}


def test_loader_options_survive_every_round_trip(model_dir):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, top_n=2, score_threshold=0.01, relative_score_threshold=0.2,
                        **LOADER)
    data = rr.model_dump()
    for key, value in LOADER.items():
        assert data[key] == value
    for again in (QRHeadReranker.model_validate(data), QRHeadReranker.model_validate_json(rr.model_dump_json()),
                  pickle.loads(pickle.dumps(rr))):
        assert again.model_dump() == data and again._slot.scorer is None
    with pytest.raises(ValidationError):
        QRHeadReranker(model=model_dir, model_kwargs="not a dict")


def test_loader_options_reach_the_loader(model_dir):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, device_map={"": "cpu"},
                        model_kwargs={"low_cpu_mem_usage": True}, trust_remote_code=False)
    plain = QRHeadReranker(model=model_dir, heads=HEADS)
    assert rr.scorer.model is not plain.scorer.model  # another loading configuration: another load
    assert str(next(rr.scorer.model.parameters()).device) == "cpu"
    assert rr.compress_documents(make_docs(), QUERY) == plain.compress_documents(make_docs(), QUERY)


def test_retrievers_serialise_their_own_settings(store, model_dir):
    rr = QRHeadReranker(model=model_dir, heads=HEADS, relative_score_threshold=0.3, **LOADER)
    base = store.as_retriever(search_kwargs={"k": 5})
    retriever = QRHeadRerankRetriever(base_retriever=base, reranker=rr, k=2, fetch_k=4)
    data = retriever.model_dump()
    assert "base_retriever" not in data and data["k"] == 2 and data["fetch_k"] == 4
    assert data["reranker"]["model_kwargs"] == LOADER["model_kwargs"]
    text = retriever.model_dump_json()
    for again in (QRHeadRerankRetriever.model_validate({**data, "base_retriever": base}),
                  QRHeadRerankRetriever.model_validate({**json.loads(text), "base_retriever": base})):
        assert again.model_dump() == data and again.base_retriever is base
    clone = pickle.loads(pickle.dumps(retriever))
    assert clone.model_dump() == data
    with pytest.raises(ValidationError):
        QRHeadRerankRetriever.model_validate(data)  # the live base retriever must be given again

    splitter = RecursiveCharacterTextSplitter(chunk_size=200, chunk_overlap=40)
    chunks = QRHeadChunkRetriever(document=Document(page_content=LONG, id="long", metadata={"title": "Facts"}),
                                  reranker=QRHeadReranker(model=model_dir, heads=HEADS, top_n=None,
                                                          device_map={"": "cpu"},
                                                          model_kwargs={"low_cpu_mem_usage": True}),
                                  k=2, text_splitter=splitter, token_budget=500, count_tokens=len)
    data = chunks.model_dump()
    assert set(data) >= {"document", "reranker", "k", "token_budget", "keep_document_order", "candidate_order"}
    assert data["reranker"]["device_map"] == {"": "cpu"} and data["reranker"]["model_kwargs"] == {
        "low_cpu_mem_usage": True}
    assert "text_splitter" not in data and "count_tokens" not in data
    again = QRHeadChunkRetriever.model_validate({**json.loads(chunks.model_dump_json()),
                                                 "text_splitter": splitter, "count_tokens": len})
    assert again.model_dump() == data
    expected = chunks.invoke(QUERY)
    assert again.invoke(QUERY) == expected
    clone = pickle.loads(pickle.dumps(chunks))
    assert clone.model_dump() == data and clone.invoke(QUERY) == expected


def test_evidence_in_metadata_and_partial_first_stage_scores(model_dir, caplog):
    import logging

    rr = QRHeadReranker(model=model_dir, heads=HEADS, top_n=None, evidence=2, first_stage_score_key="s",
                        fusion="linear")
    docs = [Document(page_content="The tower is tall. It was finished in 1889.", metadata={"s": 1.0}),
            Document(page_content="Bees dance. They talk.", metadata={"s": float("nan")})]
    with caplog.at_level(logging.INFO, logger="qrhead_integrations"):
        out = rr.compress_documents(docs, "When was the tower finished?")
    assert "first_stage option stands in" in caplog.text
    for d in out:
        assert 1 <= len(d.metadata["qrhead_evidence"]) <= 2
        for ev in d.metadata["qrhead_evidence"]:
            assert d.page_content[ev["start"]:ev["end"]] == ev["text"]
