"""scorer_from_llm: a QRHead scorer on the weights a framework's own LLM object already holds (LlamaIndex
HuggingFaceLLM, LangChain HuggingFacePipeline / ChatHuggingFace), with no copy and no reload; the LLM
generates as before, and the adapters use the scorer through from_scorer."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model

from qrhead_integrations import HeadSetNotFoundError, QRHeadScorer
from qrhead_integrations._llm import model_name_of

HEADS = [(1, 0), (2, 1), (3, 3)]
PASSAGES = ["Insulin, a hormone made by the pancreas, lowers blood sugar.",
            "Mount Everest is 8,849 metres high.",
            "The Treaty of Versailles ended the First World War."]
QUERY = "Which organ makes insulin?"


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model("qwen2", tok, seed=3)


def _checksum(model) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() for p in model.parameters()))


def test_llama_index_huggingface_llm(model, tok):
    pytest.importorskip("llama_index.llms.huggingface")
    from llama_index.llms.huggingface import HuggingFaceLLM

    from qrhead_integrations.llama_index import QRHeadChunkRetriever, QRHeadRerank
    from qrhead_integrations.llama_index.llm import scorer_from_llm

    llm = HuggingFaceLLM(model=model, tokenizer=tok, max_new_tokens=3, generate_kwargs={"do_sample": False})
    before = llm.complete("The capital of France is").text
    weights = _checksum(model)
    scorer = scorer_from_llm(llm, HEADS)
    assert scorer.model is llm._model and scorer.tokenizer is llm._tokenizer  # the same objects: no copy
    expected = QRHeadScorer.from_model(model, tok, heads=HEADS).score(QUERY, PASSAGES)
    assert scorer.score(QUERY, PASSAGES) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert _checksum(model) == weights and not model.training
    assert llm.complete("The capital of France is").text == before  # still generates the same
    # options pass through; the adapters take the scorer as it is
    assert scorer_from_llm(llm, HEADS, max_context_tokens=512).context_limit() == 512
    rerank = QRHeadRerank.from_scorer(scorer, top_n=2)
    assert rerank.scorer.model is model
    from llama_index.core.schema import NodeWithScore, TextNode

    out = rerank.postprocess_nodes([NodeWithScore(node=TextNode(text=p), score=1.0) for p in PASSAGES],
                                   query_str=QUERY)
    assert len(out) == 2
    nodes = QRHeadChunkRetriever("\n\n".join(PASSAGES), reranker=rerank, top_k=1).retrieve(QUERY)
    assert len(nodes) == 1


def test_langchain_pipeline_and_chat_model(model, tok):
    pytest.importorskip("langchain_huggingface")
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import pipeline

    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.langchain.llm import scorer_from_llm

    pipe = pipeline("text-generation", model=model, tokenizer=tok, max_new_tokens=3, do_sample=False,
                    return_full_text=False)
    llm = HuggingFacePipeline(pipeline=pipe, model_id="tiny-qwen2")
    chat = ChatHuggingFace(llm=llm, tokenizer=tok, model_id="tiny-qwen2")
    before = chat.invoke("The capital of France is").content
    expected = QRHeadScorer.from_model(model, tok, heads=HEADS).score(QUERY, PASSAGES)
    for obj in (llm, chat, pipe):
        scorer = scorer_from_llm(obj, HEADS)
        assert scorer.model is model and scorer.tokenizer is tok
        assert scorer.score(QUERY, PASSAGES) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert chat.invoke("The capital of France is").content == before
    from langchain_core.documents import Document

    reranker = QRHeadReranker.from_scorer(scorer_from_llm(chat, HEADS), top_n=1)
    assert len(reranker.compress_documents([Document(page_content=p) for p in PASSAGES], QUERY)) == 1


def test_objects_without_local_weights_are_refused():
    from langchain_core.language_models import FakeListLLM
    from llama_index.core.llms import MockLLM

    from qrhead_integrations.langchain.llm import scorer_from_llm as lc_scorer
    from qrhead_integrations.llama_index.llm import scorer_from_llm as li_scorer

    with pytest.raises(TypeError, match="no local transformers model"):
        li_scorer(MockLLM())
    with pytest.raises(TypeError, match="no local transformers pipeline"):
        lc_scorer(FakeListLLM(responses=["x"]))


def test_registered_heads_are_found_by_the_models_name(tok, tmp_path):
    """heads=None finds the set registered for the generator: the model's name comes from its hub id, or
    for a folder converted by this library from the folder's conversion record."""
    pytest.importorskip("llama_index.llms.huggingface")
    import transformers as tf
    from llama_index.llms.huggingface import HuggingFaceLLM

    from qrhead_integrations.llama_index.llm import scorer_from_llm

    # Qwen2.5-Coder-0.5B's shape (24 layers x 14 heads, 2 KV heads) at a tiny width
    small = tf.Qwen2ForCausalLM(tf.Qwen2Config(
        vocab_size=len(tok), hidden_size=56, intermediate_size=64, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=4096)).eval()
    folder = tmp_path / "qwen2.5-coder-0.5b-instruct-0123456789ab"
    small.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "qrhead-conversion.json").write_text(json.dumps({"name": "Qwen/Qwen2.5-Coder-0.5B-Instruct"}))
    small.name_or_path = str(folder)
    assert model_name_of(small) == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    scorer = scorer_from_llm(HuggingFaceLLM(model=small, tokenizer=tok))
    assert scorer.heads.model == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and len(scorer.heads) == 16
    small.name_or_path = "Qwen/Qwen2.5-Coder-0.5B-Instruct"  # a hub id is the name itself
    assert scorer_from_llm(HuggingFaceLLM(model=small, tokenizer=tok)).heads.name == "qrhead"
    small.name_or_path = str(tmp_path / "elsewhere")
    with pytest.raises(HeadSetNotFoundError):
        scorer_from_llm(HuggingFaceLLM(model=small, tokenizer=tok))
    # an explicit name wins
    assert len(scorer_from_llm(HuggingFaceLLM(model=small, tokenizer=tok),
                               model_name="Qwen/Qwen2.5-Coder-0.5B-Instruct").heads) == 16
    with torch.no_grad():
        assert scorer.rank(QUERY, PASSAGES, top_k=1)[0].index in range(3)


def test_adapters_from_llm_share_the_generators_weights(model, tok):
    """QRHeadRerank.from_llm / QRHeadChunkRetriever.from_llm (LlamaIndex) and QRHeadReranker.from_llm /
    QRHeadChunkRetriever.from_llm (LangChain): the generator's own model object scores, settings given
    to from_llm apply (a new scorer on the same model), and the results equal a plain scorer's."""
    pytest.importorskip("llama_index.llms.huggingface")
    pytest.importorskip("langchain_huggingface")
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFacePipeline
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.llms.huggingface import HuggingFaceLLM
    from transformers import pipeline

    from qrhead_integrations.langchain import QRHeadChunkRetriever as LCChunks
    from qrhead_integrations.langchain import QRHeadReranker
    from qrhead_integrations.llama_index import QRHeadChunkRetriever as LIChunks
    from qrhead_integrations.llama_index import QRHeadRerank

    plain = QRHeadScorer.from_model(model, tok, heads=HEADS, fusion=None)
    best = [r.index for r in plain.rank(QUERY, PASSAGES)]
    li_llm = HuggingFaceLLM(model=model, tokenizer=tok, max_new_tokens=3)
    rerank = QRHeadRerank.from_llm(li_llm, HEADS, top_n=2, fusion=None, max_context_tokens=512)
    assert rerank.scorer.model is model and rerank.scorer.tokenizer is tok
    assert rerank.scorer.options.max_context_tokens == 512 and rerank.top_n == 2
    out = rerank.postprocess_nodes([NodeWithScore(node=TextNode(text=p)) for p in PASSAGES], query_str=QUERY)
    assert [PASSAGES.index(n.node.text) for n in out] == best[:2]
    li_chunks = LIChunks.from_llm(li_llm, "\n\n".join(PASSAGES), heads=HEADS, top_k=1)
    assert li_chunks.reranker.scorer.model is model and len(li_chunks.retrieve(QUERY)) == 1

    lc_llm = HuggingFacePipeline(pipeline=pipeline("text-generation", model=model, tokenizer=tok, max_new_tokens=3))
    reranker = QRHeadReranker.from_llm(lc_llm, HEADS, top_n=3, fusion=None)
    assert reranker.scorer.model is model
    docs = reranker.compress_documents([Document(page_content=p) for p in PASSAGES], QUERY)
    assert [PASSAGES.index(d.page_content) for d in docs] == best
    lc_chunks = LCChunks.from_llm(lc_llm, "\n\n".join(PASSAGES), heads=HEADS, k=1)
    assert lc_chunks.reranker.scorer.model is model and lc_chunks.reranker.top_n is None
    assert len(lc_chunks.invoke(QUERY)) == 1


def test_from_scorer_applies_settings_that_differ_from_the_scorers(model, tok):
    from qrhead_integrations.langchain import QRHeadReranker

    scorer = QRHeadScorer.from_model(model, tok, heads=HEADS, max_context_tokens=1024)
    same = QRHeadReranker.from_scorer(scorer, top_n=1)
    assert same.scorer is scorer  # nothing of the scorer's changed: used as it is
    other = QRHeadReranker.from_scorer(scorer, max_context_tokens=256)
    assert other.scorer is not scorer and other.scorer.model is model
    assert other.scorer.options.max_context_tokens == 256 and scorer.options.max_context_tokens == 1024
