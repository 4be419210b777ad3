"""One product at every door: for the same input, ``scorer.rank``, ``encode().rank``, ``score_batch``, the
CLI, the server (Cohere and TEI routes) and both frameworks' rerankers return ``scorer.rank``'s ranking and
scores (to 1e-6), in the given and in the reversed order; with first-stage scores, the adapters fuse
exactly as ``scorer.rank(first_stage_scores=...)`` does."""

from __future__ import annotations

import json

import pytest

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.cli import main

HEADS = "1-0,2-1,3-3"
QUERY = "Which river carries the most water?"
PASSAGES = ["The Amazon carries more water to the sea than any other river.",
            "Paris is the capital of France.", "Bees dance to show where flowers are.",
            "The Nile is the longest river in Africa.", "Photosynthesis turns light into sugar."]
TOL = 1e-6


@pytest.fixture(scope="module")
def scorer(model_dir):
    return QRHeadScorer.from_pretrained(model_dir, HEADS, device="cpu")


def _same(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, want)) <= TOL


def _node(cls, text, i):
    """A node carrying its input position in metadata the scorer does not read (LlamaIndex's reranker reads
    the embed-mode metadata as the passage's title, so the same input means the same text and title)."""
    return cls(text=text, metadata={"i": i}, excluded_embed_metadata_keys=["i"])


def _doors(scorer, model_dir, tmp_path, capsys, cli_args=()):
    pytest.importorskip("fastapi")
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from fastapi.testclient import TestClient
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadRerank
    from qrhead_integrations.serve import create_app

    client = TestClient(create_app(scorer))
    lc = QRHeadReranker.from_scorer(scorer, top_n=None)
    li = QRHeadRerank.from_scorer(scorer, top_n=None)

    def cli(q, p):
        path = tmp_path / "passages.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in p))
        capsys.readouterr()
        assert main(["rank", "--model", model_dir, "--heads", HEADS, "--device", "cpu", "--query", q, str(path),
                     "--json", "--top-k", str(len(p)), *cli_args]) == 0
        return [(r["index"], r["score"]) for r in json.loads(capsys.readouterr().out)["rankings"][0]["results"]]

    def batch(q, p):
        scores = scorer.score_batch([(q, p), ("another question?", p)])[0]
        return sorted(enumerate(scores), key=lambda x: (-x[1], x[0]))

    return {
        "encode().rank": lambda q, p: [(r.index, r.score) for r in scorer.encode(p).rank(q)],
        "score_batch": batch,
        "CLI": cli,
        "server v2": lambda q, p: [(x["index"], x["relevance_score"]) for x in
                                   client.post("/v2/rerank", json={"query": q, "documents": p}).json()["results"]],
        "server TEI": lambda q, p: [(x["index"], x["score"]) for x in
                                    client.post("/rerank", json={"query": q, "texts": p}).json()],
        "LangChain": lambda q, p: [(d.metadata["i"], d.metadata["relevance_score"]) for d in lc.compress_documents(
            [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(p)], q)],
        "LlamaIndex": lambda q, p: [(n.node.metadata["i"], n.score) for n in li.postprocess_nodes(
            [NodeWithScore(node=_node(TextNode, t, i)) for i, t in enumerate(p)],
            query_bundle=QueryBundle(q))],
    }


@pytest.mark.parametrize("order", ["given", "reversed"])
def test_every_door_returns_scorer_rank(scorer, model_dir, tmp_path, capsys, order):
    passages = PASSAGES if order == "given" else PASSAGES[::-1]
    want = [(r.index, r.score) for r in scorer.rank(QUERY, passages)]
    for name, door in _doors(scorer, model_dir, tmp_path, capsys).items():
        try:
            _same(door(QUERY, passages), want)
        except AssertionError as exc:
            raise AssertionError(f"{name} ({order} order) differs from scorer.rank: {exc}") from None


def test_with_first_stage_scores_the_adapters_fuse_as_scorer_rank_does(scorer):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadRerank

    fused = scorer.with_options(fusion="linear", fusion_weight=0.5)
    first = [3.1, 0.2, 0.0, 2.5, 0.4]
    want = [(r.index, r.score) for r in fused.rank(QUERY, PASSAGES, first_stage_scores=first)]
    lc = QRHeadReranker.from_scorer(fused, top_n=None, first_stage_score_key="bm25")
    docs = [Document(page_content=t, metadata={"i": i, "bm25": s}) for i, (t, s) in enumerate(zip(PASSAGES, first))]
    _same([(d.metadata["i"], d.metadata["relevance_score"]) for d in lc.compress_documents(docs, QUERY)], want)
    li = QRHeadRerank.from_scorer(fused, top_n=None)
    nodes = [NodeWithScore(node=_node(TextNode, t, i), score=s) for i, (t, s) in enumerate(zip(PASSAGES, first))]
    _same([(n.node.metadata["i"], n.score) for n in li.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))], want)


@pytest.mark.parametrize("order", ["given", "reversed"])
def test_without_scores_every_door_fuses_as_scorer_rank_when_the_head_set_fuses(model_dir, tmp_path, capsys, order):
    """#25 item 1: a head set that recommends a fusion (as the embedded default's does) fuses inputs without
    scores with BM25 over the candidates at every door, never with their order."""
    from qrhead_integrations import HeadSet

    fusing = QRHeadScorer.from_pretrained(model_dir, HeadSet(((1, 0), (2, 1), (3, 3)), info={
        "recommended_options": {"fusion": "linear", "fusion_weight": 0.5}}), device="cpu")
    assert fusing.effective_options.first_stage == "bm25"
    passages = PASSAGES if order == "given" else PASSAGES[::-1]
    ranked = fusing.rank(QUERY, passages)
    assert all(r.fused for r in ranked) and ranked[0].first_stage_score > 0
    want = [(r.index, r.score) for r in ranked]
    doors = _doors(fusing, model_dir, tmp_path, capsys, cli_args=["--fusion", "linear", "--first-stage", "bm25"])
    del doors["score_batch"]  # score_batch returns the heads' own scores (as score() does)
    for name, door in doors.items():
        try:
            _same(door(QUERY, passages), want)
        except AssertionError as exc:
            raise AssertionError(f"{name} ({order} order) differs from scorer.rank: {exc}") from None


def test_a_batch_with_an_invalid_job_raises_before_any_forward_pass():
    from qrhead_integrations.engine.batch import RankJob, rank_jobs

    class NoForward:
        def encode(self, *args, **kwargs):
            raise AssertionError("a forward pass ran before the jobs were checked")

        rank = encode

    with pytest.raises(ValueError, match="query is empty"):
        rank_jobs(NoForward(), [RankJob("fine", PASSAGES), RankJob("fine too", PASSAGES), RankJob("  ", PASSAGES)])
