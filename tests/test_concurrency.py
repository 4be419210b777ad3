"""One scorer shared by threads and async tasks gives exactly the sequential results."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import load_tokenizer, tiny_model

from qrhead_integrations import Passage, QRHeadScorer
from qrhead_integrations.engine.prompt import build_prompt

HEADS = [(1, 0), (2, 1), (3, 3)]
DOCS = [
    ["Shakespeare wrote Hamlet around 1600.", "The Nile is the longest river.", "Bees dance to talk."],
    ["Mount Everest is the highest mountain.", "K2 is the second-highest mountain.", "<|im_end|> is text here."],
    [{"title": "Insulin", "text": "The pancreas makes insulin."}, "Rome is in Italy.", "Water boils at 100 C."],
]
QUERIES = ["Who wrote Hamlet?", "What is the highest mountain?", "Which organ makes insulin?", "Where is Rome?"]
JOBS = [(q, d) for q in QUERIES for d in DOCS]


def _in_threads(fn, items, threads=8):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def test_prompts_built_from_many_threads_are_identical():
    """The issue's reproducer: the shared fast tokenizer, called with different split_special_tokens flags."""
    tok = load_tokenizer("smollm2")
    passages = [Passage("Shakespeare wrote Hamlet around 1600."), Passage("A passage with <|im_end|> inside.")]
    ref = build_prompt(tok, passages, "Who wrote Hamlet?")
    bad = []
    start = threading.Barrier(8)

    def work():
        start.wait()
        for _ in range(150):
            p = build_prompt(tok, passages, "Who wrote Hamlet?")
            if p != ref:
                bad.append(p)
            tok("<|im_end|> plain call by someone else", add_special_tokens=False)  # the caller's own use

    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert bad == []


@pytest.fixture(scope="module")
def scorer():
    tok = load_tokenizer("smollm2")
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=HEADS)


def test_eight_threads_share_one_scorer(scorer):
    expected = [scorer.rank(q, d) for q, d in JOBS]
    for _ in range(2):
        got = _in_threads(lambda job: scorer.rank(*job), JOBS)
        assert got == expected


def test_threads_share_one_encoding(scorer):
    enc = scorer.encode(DOCS[0])
    expected = [enc.score(q) for q in QUERIES]
    got = _in_threads(lambda q: enc.score(q), QUERIES * 4)
    assert got == expected * 4


def test_score_batch_and_encodings_from_threads(scorer):
    pairs = JOBS[:6]
    expected = scorer.score_batch(pairs)
    got = _in_threads(lambda _: scorer.score_batch(pairs), range(4), threads=4)
    assert all(g == expected for g in got)


def test_async_adapters_under_gather(tmp_path):
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadRerank

    tok = load_tokenizer("smollm2")
    folder = tmp_path / "tiny"
    tiny_model("llama", tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    li = QRHeadRerank(model=str(folder), heads=HEADS, top_n=None)
    lc = QRHeadReranker(model=str(folder), heads=HEADS, top_n=None)

    def nodes(d):
        return [NodeWithScore(node=TextNode(text=t if isinstance(t, str) else t["text"], id_=f"n{i}"), score=1.0 - i / 10)
                for i, t in enumerate(d)]

    def docs(d):
        return [Document(page_content=t if isinstance(t, str) else t["text"], id=f"d{i}") for i, t in enumerate(d)]

    seq_li = [[(n.node.node_id, n.score) for n in li.postprocess_nodes(nodes(d), QueryBundle(q))] for q, d in JOBS]
    seq_lc = [[(x.id, x.metadata["relevance_score"]) for x in lc.compress_documents(docs(d), q)] for q, d in JOBS]

    async def main():
        a = await asyncio.gather(*(li.apostprocess_nodes(nodes(d), QueryBundle(q)) for q, d in JOBS))
        b = await asyncio.gather(*(lc.acompress_documents(docs(d), q) for q, d in JOBS))
        return a, b

    a, b = asyncio.run(main())
    assert [[(n.node.node_id, n.score) for n in r] for r in a] == seq_li
    assert [[(x.id, x.metadata["relevance_score"]) for x in r] for r in b] == seq_lc


@pytest.mark.real_model
def test_embedded_default_shared_by_threads():
    scorer = QRHeadScorer.from_pretrained()
    jobs = JOBS[:8]
    expected = [scorer.score(q, d) for q, d in jobs]
    assert _in_threads(lambda job: scorer.score(*job), jobs) == expected
