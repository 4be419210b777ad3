"""Bad input and faults, as a table: every case must end in a clear, specific error (its type, and a message
that names the problem), never in a traceback deep in torch or transformers, never in a silent wrong
result, and the caller's data is never mutated. Engine, both adapters and the CLI."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from conftest import tiny_model

from qrhead_integrations import HeadSetError, QRHeadError, QRHeadScorer
from qrhead_integrations.engine.errors import ContextBudgetError
from qrhead_integrations.engine.loading import ModelLoadError, load_model

HEADS = [(1, 0), (2, 1), (3, 3)]
P = ["Alpha Centauri is the closest star system to the Sun.", {"title": "Bees", "text": "Bees dance."},
     "The Danube flows through ten countries."]
Q = "closest star?"


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model("llama", tok, layers=4)


@pytest.fixture(scope="module")
def scorer(model, tok):
    return QRHeadScorer.from_model(model, tok, heads=HEADS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model, tok):
    folder = tmp_path_factory.mktemp("tiny-bad-input")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _gen():
    yield from P


# --- the engine: (name, call(scorer), error type, message pattern) ---------------------------------------

ENGINE = [
    ("passages is a string", lambda s: s.rank(Q, "Shakespeare wrote Hamlet."), TypeError, "single str"),
    ("passages is a dict", lambda s: s.rank(Q, {"a": "x"}), TypeError, "mapping"),
    ("passages is a set", lambda s: s.rank(Q, {"x", "y"}), TypeError, "set, which has no order"),
    ("passages is None", lambda s: s.rank(Q, None), TypeError, "passages is None"),
    ("passages is a generator", lambda s: s.rank(Q, _gen()), TypeError, "list or tuple"),
    ("passage is a number", lambda s: s.rank(Q, ["ok", 42]), TypeError, "position 1"),
    ("mapping without text", lambda s: s.rank(Q, [{"title": "x"}]), TypeError, "without a 'text' key"),
    ("text is not a string", lambda s: s.rank(Q, [{"text": 5}]), TypeError, "must be strings"),
    ("score: passages is a string", lambda s: s.score(Q, "text"), TypeError, "single str"),
    ("encode: passages is a string", lambda s: s.encode("text"), TypeError, "single str"),
    ("encode: no passages", lambda s: s.encode([]), ValueError, "no passages"),
    ("head_masses: no passages", lambda s: s.head_masses(Q, []), ValueError, "no passages"),
    ("query is None", lambda s: s.rank(None, P), TypeError, "query must be a string"),
    ("query is blank", lambda s: s.rank("  \n", P), ValueError, "query is empty"),
    ("query is bytes", lambda s: s.score(b"q", P), TypeError, "query must be a string"),
    ("top_k negative", lambda s: s.rank(Q, P, top_k=-1), ValueError, "top_k"),
    ("top_k float", lambda s: s.rank(Q, P, top_k=1.5), ValueError, "top_k"),
    ("top_k bool", lambda s: s.rank(Q, P, top_k=True), ValueError, "top_k"),
    ("first-stage length", lambda s: s.rank(Q, P, first_stage_scores=[1.0]), ValueError, "1 values for 3"),
    ("first-stage NaN", lambda s: s.rank(Q, P, first_stage_scores=[1.0, math.nan, 0.5]), ValueError, "finite"),
    ("first-stage inf", lambda s: s.rank(Q, P, first_stage_scores=[1.0, math.inf, 0.5]), ValueError, "finite"),
    ("first-stage text", lambda s: s.rank(Q, P, first_stage_scores=["a", "b", "c"]), TypeError, "not a number"),
    ("first-stage string", lambda s: s.rank(Q, P, first_stage_scores="abc"), TypeError, "list of numbers"),
    ("evidence negative", lambda s: s.rank(Q, P, evidence=-1), ValueError, "evidence"),
    ("score_batch string", lambda s: s.score_batch("abc"), TypeError, "pairs"),
    ("score_batch short pair", lambda s: s.score_batch([("q",)]), TypeError, r"pairs\[0\]"),
    ("score_batch passages string", lambda s: s.score_batch([("q", "text")]), TypeError, r"pairs\[0\] passages"),
    ("score_batch query None", lambda s: s.score_batch([(Q, P), (None, P)]), TypeError, r"pairs\[1\] query"),
    ("mutating an option", lambda s: setattr(s, "fusion", "rrf"), AttributeError, "with_options"),
    ("unknown option", lambda s: s.with_options(top_nn=3), TypeError, "unknown scoring option"),
    ("query longer than the encoded room", lambda s: s.with_options(max_query_tokens=4).encode(P).score("a b c d e f g h"),
     ValueError, "max_query_tokens"),
    ("context budget too small", lambda s: s.with_options(max_context_tokens=40).rank(Q, P), ContextBudgetError,
     "leaves no room"),
    # the query alone is longer than the context: say so (raising the budget or lowering max_query_tokens can't help)
    ("query longer than the context", lambda s: s.rank("w " * (s.context_limit() + 100), P), ContextBudgetError,
     r"the query is too long: it has \d+ tokens.*context budget of \d+ tokens \(the model's context length\)"),
    ("query longer than max_context_tokens", lambda s: s.with_options(max_context_tokens=200).rank("w " * 300, P),
     ContextBudgetError, r"query is too long.*\(max_context_tokens\); shorten the query"),
]

OPTIONS = [
    ({"max_passage_tokens": True}, TypeError, "max_passage_tokens must be an integer"),
    ({"max_passage_tokens": 0}, ValueError, "at least 1"),
    ({"max_passage_tokens": 2.5}, TypeError, "integer"),
    ({"max_context_tokens": 8}, ValueError, "at least 32"),
    ({"max_query_tokens": None}, ValueError, "must not be None"),
    ({"calibrate": "no"}, TypeError, "calibrate must be True or False"),
    ({"calibrate": 0}, TypeError, "True or False"),
    ({"rrf_k": -2}, ValueError, "rrf_k must be at least 1"),
    ({"null_query": None}, ValueError, "null_query must not be None"),
    ({"null_query": "  "}, ValueError, "must not be empty"),
    ({"candidate_order": "sideways"}, ValueError, "candidate_order must be one of"),
    ({"fusion": "max"}, ValueError, "fusion must be one of"),
    ({"fusion_weight": 1.5}, ValueError, "at most 1"),
    ({"fusion_weight": math.nan}, ValueError, "finite"),
    ({"query_rows": "all"}, ValueError, "query_rows must be one of"),
    ({"token_filter": "3sigma"}, ValueError, "token_filter must be one of"),
    ({"template": "chatml"}, ValueError, "template must be one of"),
    ({"relative_score_threshold": 2}, ValueError, "at most 1"),
    ({"score_threshold": "high"}, TypeError, "number"),
    ({"head_reduction": "max"}, ValueError, "head_reduction must be one of"),
    ({"top_nn": 3}, TypeError, "unknown scoring option"),
]

HEAD_SPECS = [
    ("99-0", HeadSetError, "do not exist"),
    ("nonsense", HeadSetError, "no 'nonsense' head set is registered"),
    ("some/missing/heads", HeadSetError, "head set file not found.*Accepted heads"),
    ("missing.json", HeadSetError, "head set file not found"),
    ("1-x", HeadSetError, "cannot parse.*Accepted heads"),
    ([(1,)], HeadSetError, "cannot parse"),
    ("random:abc", HeadSetError, "random:K"),
    ([], HeadSetError, "at least one head"),
    ([(1, 0), (1, 0)], HeadSetError, "duplicate"),
    (42, HeadSetError, "unsupported heads"),
]


@pytest.mark.parametrize("name,call,error,pattern", ENGINE, ids=[c[0] for c in ENGINE])
def test_engine_bad_input(scorer, name, call, error, pattern):
    before = copy.deepcopy(P)
    with pytest.raises(error, match=pattern) as info:
        call(scorer)
    assert P == before  # the caller's passages are untouched
    if not isinstance(info.value, AttributeError):
        assert isinstance(info.value, QRHeadError), type(info.value)


@pytest.mark.parametrize("options,error,pattern", OPTIONS, ids=[next(iter(o)) + "=" + repr(next(iter(o.values())))
                                                             for o, _, _ in OPTIONS])
def test_bad_options_fail_at_construction(model, tok, options, error, pattern):
    with pytest.raises(error, match=pattern):
        QRHeadScorer.from_model(model, tok, heads=HEADS, **options)


@pytest.mark.parametrize("heads,error,pattern", HEAD_SPECS, ids=[repr(h) for h, _, _ in HEAD_SPECS])
def test_bad_heads(model, tok, heads, error, pattern):
    with pytest.raises(error, match=pattern):
        QRHeadScorer.from_model(model, tok, heads=heads)


def test_options_are_checked_before_the_model_is_loaded(monkeypatch):
    import qrhead_integrations.engine.scoring as scoring

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")
    monkeypatch.setattr(scoring, "load_model", never)
    with pytest.raises(ValueError, match="rrf_k"):
        QRHeadScorer.from_pretrained("anything", rrf_k=0)


def test_argument_checks_come_before_any_forward(scorer, monkeypatch):
    import qrhead_integrations.engine.scoring as scoring

    def never(*args, **kwargs):
        raise AssertionError("a forward pass ran before the arguments were checked")
    monkeypatch.setattr(scoring, "PrefixCache", never)
    for call in (lambda: scorer.rank(Q, P, top_k=-1), lambda: scorer.rank(Q, P, first_stage_scores=[1.0]),
                 lambda: scorer.with_options(max_context_tokens=40).rank(Q, P)):
        with pytest.raises(ValueError):
            call()


# --- loading ---------------------------------------------------------------------------------------------


def _gguf(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


LOADING = [
    ("cuda without CUDA", lambda tmp: load_model("smollm2-135m-instruct", device="cuda"), ValueError,
     "CUDA is not available"),
    ("int8 dtype", lambda tmp: load_model("smollm2-135m-instruct", dtype=torch.int8), ValueError, "floating-point"),
    ("unknown dtype", lambda tmp: load_model("smollm2-135m-instruct", dtype="int4"), ValueError, "unsupported dtype"),
    ("bogus attention", lambda tmp: load_model("smollm2-135m-instruct", attn_implementation="bogus"), ValueError,
     "attn_implementation='bogus'"),
    ("missing path", lambda tmp: load_model(str(tmp / "nope")), ModelLoadError, "not found"),
    ("random bytes gguf", lambda tmp: load_model(str(_gguf(tmp, "r.gguf", b"\x00\x13garbage" * 100))), ModelLoadError,
     "not a GGUF file"),
    ("empty gguf", lambda tmp: load_model(str(_gguf(tmp, "e.gguf", b""))), ModelLoadError, "empty"),
    ("truncated gguf", lambda tmp: load_model(str(_gguf(tmp, "t.gguf", b"GGUF\x03\x00"))), ModelLoadError, "cut short"),
    ("model_kwargs not a dict", lambda tmp: load_model("smollm2-135m-instruct", model_kwargs="x"), ValueError,
     "model_kwargs must be a dict"),
    ("device and device_map", lambda tmp: load_model("smollm2-135m-instruct", device="cpu", device_map="auto"),
     ValueError, "either device or device_map"),
    ("bad device string", lambda tmp: load_model("smollm2-135m-instruct", device="gpu0"), ValueError, "invalid device"),
]


@pytest.mark.parametrize("name,call,error,pattern", LOADING, ids=[c[0] for c in LOADING])
def test_loading_bad_input(tmp_path, name, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(tmp_path)


def test_pickle_only_folder_needs_an_explicit_opt_in(tmp_path, model, tok):
    folder = tmp_path / "pickled"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    for f in folder.glob("*.safetensors"):  # the same weights, as a pickle only
        f.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle weights"):
        load_model(str(folder))
    loaded = load_model(str(folder), model_kwargs={"use_safetensors": False})
    assert loaded.model.config.num_hidden_layers == model.config.num_hidden_layers


def test_a_misspelt_model_kwargs_name_is_a_library_error(model_dir):
    with pytest.raises(QRHeadError, match="attn_implementaton.*model_kwargs passed: attn_implementaton") as info:
        QRHeadScorer.from_pretrained(model_dir, heads=HEADS, model_kwargs={"attn_implementaton": "eager"})
    assert isinstance(info.value, TypeError) and isinstance(info.value, ModelLoadError)


def test_the_query_too_long_message_does_not_blame_the_budget(scorer):
    with pytest.raises(ContextBudgetError) as info:
        scorer.rank("w " * (scorer.context_limit() + 100), P)
    assert "max_query_tokens" not in str(info.value) and "raise max_context_tokens" not in str(info.value)


def test_a_truncated_result_keeps_the_callers_text_and_says_what_was_scored(scorer):
    long = "Alpha Centauri is near. " + " ".join(f"word{i}" for i in range(400))
    passages = [long, "The Danube flows through ten countries."]
    before = copy.deepcopy(passages)
    ranked = {r.index: r for r in scorer.with_options(max_passage_tokens=20).rank(Q, passages)}
    assert passages == before
    cut = ranked[0]
    assert cut.truncated and cut.text == long  # the caller's whole passage
    assert cut.scored_text and long.startswith(cut.scored_text) and len(cut.scored_text) < len(long)
    assert not ranked[1].truncated and ranked[1].scored_text is None and ranked[1].text == passages[1]


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_cache_root_that_cannot_be_used(tmp_path, monkeypatch, kind):
    import os

    if kind == "file":
        root = tmp_path / "cache-file"
        root.write_text("x")
        pattern = "is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write anywhere")
        root = tmp_path / "ro"
        root.mkdir(mode=0o500)
        pattern = "not writable|cannot create"
    monkeypatch.setenv("QRHEAD_CACHE", str(root))
    with pytest.raises(ModelLoadError, match=f"({pattern}).*QRHEAD_CACHE"):
        load_model(str(_gguf(tmp_path, "ok.gguf", b"GGUF" + b"\x00" * 64)))


# --- the adapters ------------------------------------------------------------------------------------------


def _llama_index():
    pytest.importorskip("llama_index.core")
    from qrhead_integrations.llama_index import QRHeadRerank
    return QRHeadRerank


def _langchain():
    pytest.importorskip("langchain_core")
    from qrhead_integrations.langchain import QRHeadReranker
    return QRHeadReranker


ADAPTER_FIELDS = [
    ({"top_nn": 2}, "top_nn"),
    ({"max_pasage_tokens": 8}, "max_pasage_tokens"),
    ({"max_passage_tokens": True}, "max_passage_tokens"),
    ({"calibrate": "no"}, "calibrate"),
    ({"rrf_k": -2}, "rrf_k"),
    ({"fusion": "max"}, "fusion"),
    ({"null_query": " "}, "null_query"),
    ({"top_n": 0}, "top_n"),
    ({"query_rows": "all"}, "query_rows"),
]


@pytest.mark.parametrize("framework", ["llama_index", "langchain"])
@pytest.mark.parametrize("fields,name", ADAPTER_FIELDS, ids=[n for _, n in ADAPTER_FIELDS])
def test_adapters_reject_bad_and_unknown_fields(framework, fields, name):
    from pydantic import ValidationError

    cls = _llama_index() if framework == "llama_index" else _langchain()
    with pytest.raises(ValidationError, match=name):
        cls(**fields)


def test_llama_index_needs_a_query_and_logs_nodes_without_text(model_dir, caplog):
    QRHeadRerank = _llama_index()
    from llama_index.core.schema import ImageNode, NodeWithScore, TextNode

    rr = QRHeadRerank(model=model_dir, heads=HEADS, top_n=None)
    nodes = [NodeWithScore(node=TextNode(text="Bees dance.", id_="t"), score=0.5),
             NodeWithScore(node=ImageNode(image="aGk=", id_="img"), score=0.4)]
    before = [n.model_dump() for n in nodes]
    with pytest.raises(ValueError, match="needs the query"):
        rr.postprocess_nodes(nodes)
    with caplog.at_level(logging.WARNING, logger="qrhead_integrations"):
        out = rr.postprocess_nodes(nodes, query_str="bees")
    assert len(out) == 2 and "no text to score" in caplog.text and "img" in caplog.text
    assert [n.model_dump() for n in nodes] == before


def test_llama_index_huge_metadata_keeps_the_text_and_flags_the_cut(model_dir):
    QRHeadRerank = _llama_index()
    from llama_index.core.schema import NodeWithScore, TextNode

    rr = QRHeadRerank(model=model_dir, heads=HEADS, top_n=None, max_passage_tokens=64)
    node = NodeWithScore(node=TextNode(text="The answer is 42.", metadata={"blob": "x" * 20000}, id_="big"), score=1.0)
    (out,) = rr.postprocess_nodes([node], query_str="answer?")
    assert out.node.metadata.get("qrhead_truncated") is True and out.node.text == "The answer is 42."
    assert len(node.node.metadata["blob"]) == 20000


def test_langchain_rerank_retriever_rejects_plain_strings(model_dir):
    QRHeadReranker = _langchain()
    from langchain_core.runnables import RunnableLambda

    from qrhead_integrations.langchain import QRHeadRerankRetriever

    bad = RunnableLambda(lambda q: ["plain", "strings"])
    retriever = QRHeadRerankRetriever(base_retriever=bad, reranker=QRHeadReranker(model=model_dir, heads=HEADS))
    with pytest.raises(TypeError, match="not LangChain Documents"):
        retriever.invoke("q")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        QRHeadRerankRetriever(base_retriever=RunnableLambda(lambda q: []),
                              reranker=QRHeadReranker(model=model_dir, heads=HEADS)).invoke("q", k=0)


# --- the CLI -------------------------------------------------------------------------------------------------


@pytest.fixture
def passages_txt(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("The sun is a star.\nBees make honey.\n", encoding="utf-8")
    return p


def _cli_cases(tmp_path, passages_txt, model_dir):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    m = ["--model", model_dir, "--heads", "1-0"]
    return [
        ("a folder as passages", ["rank", *m, "--query", "q", str(tmp_path)], 2, "is a folder"),
        ("non-UTF-8 file", ["rank", *m, "--query", "q", str(latin1)], 2, "latin1.txt is not UTF-8"),
        ("missing passages file", ["rank", *m, "--query", "q", str(tmp_path / "no.txt")], 2, "file not found"),
        ("empty query", ["rank", *m, "--query", " ", str(passages_txt)], 2, "--query is empty"),
        ("query and queries", ["rank", *m, "--query", "q", "--queries", str(passages_txt), str(passages_txt)], 2,
         "either --query"),
        ("neither query nor queries", ["rank", *m, str(passages_txt)], 2, "either --query"),
        ("heads that are not a file", ["rank", "--model", model_dir, "--heads", "x/y", "--query", "q",
                                       str(passages_txt)], 2, "Accepted heads"),
        ("heads out of range", ["rank", "--model", model_dir, "--heads", "9-0", "--query", "q", str(passages_txt)], 2,
         "do not exist"),
        ("fusion weight above 1", ["rank", *m, "--fusion-weight", "2", "--query", "q", str(passages_txt)], 2,
         "at most 1"),
        ("missing model", ["rank", "--model", str(tmp_path / "none"), "--query", "q", str(passages_txt)], 2,
         "not found"),
        ("random-bytes gguf model", ["rank", "--model", str(_gguf(tmp_path, "x.gguf", b"nope" * 10)), "--query", "q",
                                     str(passages_txt)], 1, "not a GGUF file"),
    ]


def test_cli_bad_input(tmp_path, passages_txt, model_dir, capsys):
    from qrhead_integrations.cli import main

    for name, argv, code, pattern in _cli_cases(tmp_path, passages_txt, model_dir):
        assert main(argv) == code, name
        err = capsys.readouterr().err
        assert pattern in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)


@pytest.mark.parametrize("argv", [["rank", "--top-k", "-1", "--query", "q", "f"], ["rank", "--top-k", "x", "-q", "q", "f"],
                                  ["rank", "--fusion", "max", "-q", "q", "f"], ["rank", "--query-rows", "all", "-q", "q", "f"]])
def test_cli_usage_errors_before_any_work(argv, capsys):
    from qrhead_integrations.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "error:" in capsys.readouterr().err
