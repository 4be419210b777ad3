"""``qrhead serve``: the Cohere and TEI rerank endpoints, limits, auth, overload, concurrency, and real
clients (the Cohere SDK, LangChain's and LlamaIndex's CohereRerank) against a server on 127.0.0.1.

Most tests serve a tiny random-weight model (fast); one serves the embedded default model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import load_tokenizer, tiny_model  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from qrhead_integrations import QRHeadScorer  # noqa: E402
from qrhead_integrations.serve import Limits, RerankWorker, create_app, rank_groups  # noqa: E402
from qrhead_integrations.serve.server import BackgroundServer  # noqa: E402

KEY = "test-key-123"
DOCS = [
    "Shakespeare wrote Hamlet, the tragedy of the Prince of Denmark, around 1600.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "The Amazon river carries more water to the ocean than any other river.",
    "Paris is the capital and the largest city of France.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The Great Wall of China was built over many centuries by several dynasties.",
]
OTHER_DOCS = [
    "Jupiter is the largest planet of the solar system.",
    "Bach composed the Brandenburg Concertos.",
    "The Pacific is the deepest ocean.",
]
QUERIES = ["Who wrote Hamlet?", "How high is Everest?", "Which river carries the most water?",
           "What is the capital of France?", "How do plants make sugar?", "Who built the Great Wall?",
           "Which planet is the largest?", "Who composed the Brandenburg Concertos?"]


@pytest.fixture(scope="module")
def scorer():
    tok = load_tokenizer("smollm2")
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=[(1, 0), (2, 1), (3, 3)])


def expected(scorer, query, docs):
    """What the server must return: the scorer's own ranking, every document best first."""
    return [(r.index, r.score) for r in scorer.rank(query, docs)]


def pairs(results, score_key="relevance_score"):
    return [(r["index"], r[score_key]) for r in results]


@pytest.fixture(scope="module")
def client(scorer):
    with TestClient(create_app(scorer)) as c:
        yield c


class Counting:
    """The scorer, recording the passages of every encoding and every single call (each reads them once)."""

    def __init__(self, scorer, calls):
        self.scorer, self.calls = scorer, calls

    def encode(self, docs, **kwargs):
        self.calls.append([getattr(d, "text", d) for d in docs])
        return self.scorer.encode(docs, **kwargs)

    def rank(self, query, docs, **kwargs):
        self.calls.append([getattr(d, "text", d) for d in docs])
        return self.scorer.rank(query, docs, **kwargs)


class GatedScorer:
    """The scorer, but ``encode`` waits for ``gate`` (to hold the worker while requests pile up)."""

    def __init__(self, scorer):
        self._scorer = scorer
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.encodes = 0

    def _hold(self):
        self.waiting.set()
        assert self.gate.wait(60), "gate never opened"
        self.encodes += 1

    def encode(self, passages, heads=None, **kwargs):
        self._hold()
        return self._scorer.encode(passages, heads, **kwargs)

    def rank(self, *args, **kwargs):  # a request alone is ranked by one call, which reads its documents once
        self._hold()
        return self._scorer.rank(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._scorer, name)


# --- Cohere and TEI shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cohere_rerank_returns_every_document_best_first_with_the_scorers_scores(client, scorer, version):
    want = expected(scorer, QUERIES[0], DOCS)
    r = client.post(f"/{version}/rerank", json={"model": "anything", "query": QUERIES[0], "documents": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert pairs(body["results"]) == want
    assert sorted(i for i, _ in want) == list(range(len(DOCS)))
    scores = [s for _, s in pairs(body["results"])]
    assert scores == sorted(scores, reverse=True)
    assert all(type(s) is float for s in scores)
    assert all("document" not in x for x in body["results"])
    assert body["meta"]["api_version"]["version"] == version[1]
    assert body["meta"]["tokens"]["input_tokens"] == body["usage"]["total_tokens"] == (
        scorer.count_tokens(QUERIES[0].strip()) + sum(scorer.count_tokens(d) for d in DOCS))
    assert body["model"] == scorer.model_name and len(body["id"]) == 36


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_top_n_and_return_documents(client, scorer, version):
    want = expected(scorer, QUERIES[1], DOCS)
    r = client.post(f"/{version}/rerank", json={"query": QUERIES[1], "documents": DOCS, "top_n": 2,
                                                "return_documents": True})
    results = r.json()["results"]
    assert pairs(results) == want[:2]
    assert [x["document"] for x in results] == [{"text": DOCS[i]} for i, _ in want[:2]]
    r = client.post(f"/{version}/rerank", json={"query": QUERIES[1], "documents": DOCS, "top_n": 50})
    assert pairs(r.json()["results"]) == want


def test_document_objects_keep_their_fields_and_titles_are_scored(client, scorer):
    docs = [{"text": d, "id": f"d{i}", **({"title": "Hamlet"} if i == 0 else {})} for i, d in enumerate(DOCS[:3])]
    want = expected(scorer, QUERIES[0], [{"text": d["text"], **({"title": d["title"]} if "title" in d else {})}
                                         for d in docs])
    body = client.post("/v2/rerank", json={"query": QUERIES[0], "documents": docs, "return_documents": True}).json()
    assert pairs(body["results"]) == want
    assert want != expected(scorer, QUERIES[0], DOCS[:3])  # the title changed the scores
    assert [x["document"] for x in body["results"]] == [docs[i] for i, _ in want]


def test_tei_rerank(client, scorer):
    want = expected(scorer, QUERIES[2], DOCS)
    body = client.post("/rerank", json={"query": QUERIES[2], "texts": DOCS, "return_text": True,
                                        "raw_scores": True, "truncate": True}).json()
    assert isinstance(body, list)
    assert pairs(body, "score") == want
    assert [x["text"] for x in body] == [DOCS[i] for i, _ in want]
    body = client.post("/rerank", json={"query": QUERIES[2], "texts": DOCS}).json()
    assert pairs(body, "score") == want and all("text" not in x for x in body)


def test_empty_document_list_gives_no_results(client):
    assert client.post("/v2/rerank", json={"query": "q", "documents": []}).json()["results"] == []
    assert client.post("/rerank", json={"query": "q", "texts": []}).json() == []


def test_health_models_and_openapi(client, scorer):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == scorer.model_name and h["heads"] == "1-0,2-1,3-3"
    assert h["queue"]["max_queue"] == Limits().max_queue and h["stats"]["completed"] >= 0
    m = client.get("/v1/models").json()
    assert m["object"] == "list" and m["data"][0]["id"] == scorer.model_name
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/health", "/v1/models"} <= set(paths)
    assert client.get("/docs").status_code == 200
    with TestClient(create_app(scorer, docs=False)) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, field", [
    ({"documents": DOCS}, "query: Field required"),
    ({"query": "q"}, "documents: Field required"),
    ({"query": "q", "documents": "not a list"}, "documents:"),
    ({"query": "q", "documents": DOCS, "top_n": 0}, "top_n: Input should be greater than or equal to 1"),
    ({"query": "q", "documents": [{"title": "no text"}]}, "documents.0"),
    ({"query": "q", "documents": [3]}, "documents.0"),
])
def test_malformed_requests_are_422_naming_the_field(client, body, field):
    r = client.post("/v2/rerank", json=body)
    assert r.status_code == 422
    err = r.json()
    assert field in err["message"] and err["error"] == err["message"] and err["error_type"] == "validation"


def test_invalid_json_is_422(client):
    r = client.post("/v2/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "invalid request" in r.json()["message"]


def test_scorer_errors_are_400_with_the_scorers_message(client):
    r = client.post("/v2/rerank", json={"query": "   ", "documents": DOCS})
    assert r.status_code == 400 and r.json()["message"] == "query is empty"
    r = client.post("/rerank", json={"query": "", "texts": DOCS})
    assert r.status_code == 400 and r.json()["error"] == "query is empty"


@pytest.fixture(scope="module")
def limited(scorer):
    limits = Limits(max_documents=4, max_request_tokens=60, max_query_tokens=8, max_body_bytes=2000)
    with TestClient(create_app(scorer, limits)) as c:
        yield c


def _limit_error(r, limit, value, maximum):
    assert r.status_code == 413, r.text
    err = r.json()
    assert (err["limit"], err["value"], err["max"], err["error_type"]) == (limit, value, maximum, "limit")
    assert limit in err["message"] and str(value) in err["message"] and str(maximum) in err["message"]


def test_limits_are_413_naming_the_limit_and_the_value(limited, scorer):
    _limit_error(limited.post("/v2/rerank", json={"query": "q", "documents": DOCS[:5]}), "max_documents", 5, 4)
    _limit_error(limited.post("/rerank", json={"query": "q", "texts": DOCS[:5]}), "max_documents", 5, 4)
    query = "one two three four five six seven eight nine ten"
    _limit_error(limited.post("/v2/rerank", json={"query": query, "documents": DOCS[:1]}),
                 "max_query_tokens", scorer.count_tokens(query), 8)
    total = scorer.count_tokens("q") + sum(scorer.count_tokens(d) for d in DOCS[:4])
    assert total > 60
    _limit_error(limited.post("/v2/rerank", json={"query": "q", "documents": DOCS[:4]}),
                 "max_request_tokens", total, 60)
    assert limited.post("/v2/rerank", json={"query": "q", "documents": DOCS[:2]}).status_code == 200


def test_body_size_limit_with_and_without_content_length(limited):
    body = json.dumps({"query": "q", "documents": ["x" * 3000]}).encode()
    _limit_error(limited.post("/v2/rerank", content=body, headers={"content-type": "application/json"}),
                 "max_body_bytes", len(body), 2000)

    def chunks():  # no Content-Length: chunked transfer
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    r = limited.post("/v2/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["limit"] == "max_body_bytes" and r.json()["value"] > 2000
    small = json.dumps({"query": "q", "documents": ["a short one"]}).encode()
    r = limited.post("/v2/rerank", content=iter([small[:10], small[10:]]), headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["results"]) == 1


def test_api_key(scorer, monkeypatch):
    with TestClient(create_app(scorer, api_key=KEY)) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
            r = c.post("/v2/rerank", json={"query": "q", "documents": DOCS}, headers=headers)
            assert r.status_code == 401 and "API key" in r.json()["message"]
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/models").status_code == 401
        assert c.post("/rerank", json={"query": "q", "texts": DOCS}).status_code == 401
        ok = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/v2/rerank", json={"query": "q", "documents": DOCS}, headers=ok).status_code == 200
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.get("/health").status_code == 200  # load balancers need no key
    monkeypatch.setenv("QRHEAD_TEST_KEY", "from-env")
    with TestClient(create_app(scorer, api_key_env="QRHEAD_TEST_KEY")) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_the_api_key_is_checked_before_the_body_is_read(scorer):
    """A wrong key gets 401 whatever the body (not JSON, malformed, or never read); the API docs need the
    key too, unless the server makes them public."""
    with TestClient(create_app(scorer, Limits(max_body_bytes=1000), api_key=KEY)) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for body in (b"{not json", b'{"query": 5}', b"x" * 5000):
                r = c.post("/v2/rerank", content=body, headers={"content-type": "application/json", **headers})
                assert r.status_code == 401 and r.json()["error_type"] == "authentication", (headers, body[:10])
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        ok = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
        assert c.post("/v2/rerank", content=b"{not json", headers=ok).status_code == 422  # then the body is read
        assert c.post("/v2/rerank", content=b"x" * 5000, headers=ok).status_code == 413
    with TestClient(create_app(scorer, api_key=KEY, public_docs=True)) as c:
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200
        assert c.get("/v1/models").status_code == 401


def _send_and_hang_up(url: str, body: dict) -> None:
    """A client that sends a whole request, then disconnects without reading the answer."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    data = json.dumps(body).encode()
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(0.2)  # the server has read the request and queued it


def test_a_client_that_disconnects_frees_its_slot(scorer):
    """Requests whose clients went away leave the queue (max_queue is not filled by abandoned work) and
    are never scored; the waiting clients' answers are unchanged."""
    gated = GatedScorer(scorer)
    app = create_app(gated, Limits(max_queue=4))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        worker = app.state.qrhead.worker
        with ThreadPoolExecutor(2) as pool:
            blocker = pool.submit(http.post, "/v2/rerank", json={"query": "warm", "documents": ["blocking"]})
            assert gated.waiting.wait(30)
            for q in QUERIES[:3]:  # fill the queue (1 in progress + 3 queued = max_queue), then hang up
                _send_and_hang_up(server.url, {"query": q, "documents": DOCS})
            deadline = time.monotonic() + 30
            while worker.pending > 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert worker.pending == 1  # only the request in progress holds a slot
            waiting = [pool.submit(http.post, "/v2/rerank", json={"query": q, "documents": DOCS})
                       for q in QUERIES[3:4]]  # not refused: the abandoned requests left the queue
            gated.gate.set()
            assert blocker.result(60).status_code == 200
            got = [f.result(60) for f in waiting]
        assert [r.status_code for r in got] == [200]
        assert pairs(got[0].json()["results"]) == expected(scorer, QUERIES[3], DOCS)
        stats = worker.stats()
        assert stats["cancelled"] == 3 and stats["completed"] == 2 and gated.encodes == 2  # never scored
        assert worker.pending == 0


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight_and_refuses_new_ones(scorer, tmp_path):
    """A real `qrhead serve` process: SIGTERM while six long requests are queued or being scored. New
    connections are refused at once, every request in flight gets its full answer (equal to the scorer's),
    and the process ends cleanly."""
    import signal
    import socket

    folder = tmp_path / "tiny"
    scorer.model.save_pretrained(folder)
    scorer.tokenizer.save_pretrained(folder)
    long_docs = [" ".join(f"word{i}x{j}" for j in range(150)) for i in range(30)]  # windows: ~1 s a request
    requests = [(q, long_docs) for q in QUERIES[:6]]
    want = [expected(scorer, q, d) for q, d in requests]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "qrhead_integrations.serve.cli", "--model", str(folder),
                             "--heads", "1-0,2-1,3-3", "--device", "cpu", "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)

        def post(qd):
            r = httpx.post(f"{url}/v2/rerank", json={"query": qd[0], "documents": qd[1]}, timeout=120)
            return r, time.monotonic()

        with ThreadPoolExecutor(len(requests)) as pool:
            futures = [pool.submit(post, qd) for qd in requests]
            while httpx.get(f"{url}/health", timeout=10).json()["queue"]["pending"] < len(requests):
                time.sleep(0.05)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            refused = False
            while not refused and time.monotonic() < signalled + 5:
                try:
                    httpx.get(f"{url}/health", timeout=2)
                    time.sleep(0.05)
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    # refused, or accepted by the closing listener and reset unanswered: not served either way
                    refused = True
            results = [f.result(120) for f in futures]
        assert refused, "new connections were still accepted after SIGTERM"
        assert [r.status_code for r, _ in results] == [200] * len(requests), [r.text for r, _ in results]
        assert max(t for _, t in results) > signalled  # some were still in flight when the signal came
        for (r, _), w in zip(results, want):
            got = pairs(r.json()["results"])
            assert [i for i, _ in got] == [i for i, _ in w]
            assert max(abs(a - b) for (_, a), (_, b) in zip(got, w)) < 1e-6
        # uvicorn re-raises the signal once it has shut down (the conventional status of a process ended by
        # SIGTERM, 143 in a shell), after draining and stopping the model worker
        assert proc.wait(60) == -signal.SIGTERM
        log = proc.stdout.read()
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_rank_groups_drops_abandoned_requests_without_encoding_them(scorer):
    from qrhead_integrations.serve.worker import AbandonedError

    calls = []
    requests = [("Who wrote Hamlet?", DOCS), ("Which planet is the largest?", OTHER_DOCS), ("How high is Everest?", DOCS)]
    out = {pos: res for pos, res, _ in rank_groups(Counting(scorer, calls), requests, skip=lambda pos: pos in (1, 2))}
    assert isinstance(out[1], AbandonedError) and isinstance(out[2], AbandonedError)
    assert [(r.index, r.score) for r in out[0]] == expected(scorer, *requests[0])
    assert calls == [DOCS]  # OTHER_DOCS, wanted by nobody, was never encoded


def test_queue_full_is_503_with_retry_after(scorer):
    gated = GatedScorer(scorer)
    with TestClient(create_app(gated, Limits(max_queue=1))) as c:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.post, "/v2/rerank", json={"query": "q", "documents": DOCS})
            assert gated.waiting.wait(30)
            r = c.post("/v2/rerank", json={"query": "q", "documents": DOCS})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error_type"] == "overloaded" and "max_queue=1" in r.json()["message"]
            assert c.get("/health").json()["stats"]["rejected"] == 1
            gated.gate.set()
            assert first.result(30).status_code == 200
        assert c.post("/v2/rerank", json={"query": "q", "documents": DOCS}).status_code == 200


# --- concurrency ------------------------------------------------------------------------------------------


def test_concurrent_requests_share_encodings_and_equal_sequential_results(scorer):
    """16 requests queued at once (8 questions over each of two document lists) are grouped into two
    encodings; every result equals the same request served alone and the scorer's own ranking."""
    gated = GatedScorer(scorer)
    app = create_app(gated)
    requests = [(q, DOCS) for q in QUERIES] + [(q, OTHER_DOCS) for q in QUERIES]
    want = [expected(scorer, q, d) for q, d in requests]
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        worker = app.state.qrhead.worker
        with ThreadPoolExecutor(17) as pool:
            blocker = pool.submit(http.post, "/v2/rerank", json={"query": "warm", "documents": ["blocking"]})
            assert gated.waiting.wait(30)
            futures = [pool.submit(http.post, "/v2/rerank", json={"query": q, "documents": d, "top_n": 5})
                       for q, d in requests]
            deadline = time.monotonic() + 30
            while worker.pending < 17 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert worker.pending == 17
            gated.gate.set()
            concurrent = [f.result(60).json()["results"] for f in futures]
            assert blocker.result(60).status_code == 200
        stats = worker.stats()
        assert gated.encodes == 3 and stats["encodings"] == 3 and stats["shared_requests"] == 16
        sequential = [http.post("/v2/rerank", json={"query": q, "documents": d, "top_n": 5}).json()["results"]
                      for q, d in requests]
    assert concurrent == sequential
    assert [pairs(c) for c in concurrent] == [w[:5] for w in want]


def test_a_bad_request_in_a_group_fails_alone(scorer):
    gated = GatedScorer(scorer)
    worker = RerankWorker(gated, Limits(max_query_tokens=8)).start()
    try:
        blocker = worker.submit("warm", ["blocking"])
        assert gated.waiting.wait(30)
        good = [worker.submit(q, DOCS) for q in QUERIES[:3]]
        bad = worker.submit("a query that is much longer than eight tokens, surely", DOCS)
        gated.gate.set()
        assert [[(r.index, r.score) for r in f.result(30).ranking] for f in good] == \
            [expected(scorer, q, DOCS) for q in QUERIES[:3]]
        with pytest.raises(ValueError, match="max_query_tokens"):
            bad.result(30)
        assert blocker.result(30).ranking[0].index == 0
        assert all(f.result().shared for f in good)
    finally:
        worker.stop()


def test_stopped_worker_refuses_and_fails_queued_requests(scorer):
    from qrhead_integrations.serve import OverloadedError

    gated = GatedScorer(scorer)
    worker = RerankWorker(gated).start()
    first = worker.submit("q", DOCS)
    assert gated.waiting.wait(30)
    queued = worker.submit("q2", DOCS)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    time.sleep(0.2)
    gated.gate.set()
    stopper.join(30)
    assert first.result(30).ranking and not worker.alive
    with pytest.raises(OverloadedError):
        queued.result(30)
    with pytest.raises(OverloadedError):
        worker.submit("q", DOCS)


def test_windowed_documents_get_the_scorers_own_ranking(scorer):
    """Near a window boundary a plan for the reserved query room differs from a single call's plan: the
    server (alone and batched) and the Ray Data rows still return exactly ``scorer.rank``'s scores."""
    import random

    from qrhead_integrations.serve.ray import rerank_rows

    small = scorer.with_options(max_context_tokens=1024)
    rng = random.Random(0)
    words = "river planet music bread empire doctor goal processor the of and a to in".split()
    docs = [" ".join(rng.choice(words) for _ in range(150))[:880] for _ in range(5)]
    assert len(small.encode(docs).windows) != len(small.encode(docs, queries=[QUERIES[0]]).windows)
    want = {q: expected(small, q, docs) for q in QUERIES[:3]}
    gated = GatedScorer(small)
    app = create_app(gated)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        gated.gate.set()
        alone = http.post("/v2/rerank", json={"query": QUERIES[0], "documents": docs})
        assert alone.status_code == 200 and pairs(alone.json()["results"]) == want[QUERIES[0]]
        gated.gate.clear()
        with ThreadPoolExecutor(4) as pool:  # a batch: three requests over the same documents, queued together
            blocker = pool.submit(http.post, "/v2/rerank", json={"query": "warm", "documents": ["blocking"]})
            while app.state.qrhead.worker.pending < 1:
                time.sleep(0.01)
            futures = {q: pool.submit(http.post, "/v2/rerank", json={"query": q, "documents": docs}) for q in want}
            while app.state.qrhead.worker.pending < 4:
                time.sleep(0.01)
            gated.gate.set()
            assert blocker.result(60).status_code == 200
            for q, f in futures.items():
                assert pairs(f.result(60).json()["results"]) == want[q]
    rows = rerank_rows(small, [{"query": q, "candidates": docs} for q in want])
    for row, q in zip(rows, want):
        assert [(i, row["scores"][i]) for i in row["ranking"]] == want[q]


def test_rank_groups_encodes_each_document_list_once(scorer):
    calls = []
    reqs = [("q1", DOCS), ("q2", OTHER_DOCS), ("q3", list(DOCS)), ("", DOCS), ("q4", [])]
    out = {pos: (res, shared) for pos, res, shared in rank_groups(Counting(scorer, calls), reqs)}
    assert calls == [DOCS, OTHER_DOCS]
    assert [(r.index, r.score) for r in out[2][0]] == expected(scorer, "q3", DOCS) and out[2][1]
    assert isinstance(out[3][0], ValueError) and out[4][0] == [] and not out[1][1]


# --- real clients -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(scorer):
    with BackgroundServer(create_app(scorer, api_key=KEY)) as s:
        yield s


def test_cohere_sdk_v2_and_v1(server, scorer):
    cohere = pytest.importorskip("cohere")
    co = cohere.ClientV2(api_key=KEY, base_url=server.url)
    want = expected(scorer, QUERIES[3], DOCS)
    res = co.rerank(model="qrhead", query=QUERIES[3], documents=DOCS, top_n=3)
    assert [(r.index, r.relevance_score) for r in res.results] == want[:3]
    assert res.id and res.meta.api_version.version == "2" and res.meta.tokens.input_tokens > 0
    v1 = cohere.Client(api_key=KEY, base_url=server.url)
    res = v1.rerank(model="qrhead", query=QUERIES[3], documents=DOCS, top_n=2, return_documents=True)
    assert [(r.index, r.relevance_score, r.document.text) for r in res.results] == \
        [(i, s, DOCS[i]) for i, s in want[:2]]
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=server.url).rerank(model="m", query="q", documents=DOCS)
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        co.rerank(model="qrhead", query="q", documents=["d"] * 1001)
    assert info.value.status_code == 413 and info.value.body["limit"] == "max_documents"


def test_langchain_cohere_rerank(server, scorer):
    pytest.importorskip("langchain_cohere")
    import cohere
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    docs = [Document(page_content=d, metadata={"n": i}) for i, d in enumerate(DOCS)]
    want = expected(scorer, QUERIES[4], DOCS)
    via_base_url = CohereRerank(base_url=server.url, cohere_api_key=KEY, model="qrhead", top_n=3)
    via_client = CohereRerank(client=cohere.ClientV2(api_key=KEY, base_url=server.url), model="qrhead", top_n=3)
    for rr in (via_base_url, via_client):
        out = rr.compress_documents(docs, QUERIES[4])
        assert [(d.metadata["n"], d.metadata["relevance_score"]) for d in out] == want[:3]
        assert [d.page_content for d in out] == [DOCS[i] for i, _ in want[:3]]
    assert via_base_url.rerank(DOCS, QUERIES[4], top_n=None) == [
        {"index": i, "relevance_score": s} for i, s in want]


def test_llama_index_cohere_rerank(server, scorer):
    pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    nodes = [NodeWithScore(node=TextNode(text=d, id_=f"n{i}"), score=0.0) for i, d in enumerate(DOCS)]
    want = expected(scorer, QUERIES[5], DOCS)
    rr = CohereRerank(api_key=KEY, base_url=server.url, model="qrhead", top_n=2)
    out = rr.postprocess_nodes(nodes, query_str=QUERIES[5])
    assert [(n.node.node_id, n.score) for n in out] == [(f"n{i}", s) for i, s in want[:2]]


# --- command line and packaging ---------------------------------------------------------------------------


def test_cli_parses_serve_options():
    from qrhead_integrations.cli import build_parser
    from qrhead_integrations.serve.cli import cmd_serve, limits_from_args, settings_from_args

    args = build_parser().parse_args(["serve", "--port", "9001", "--max-documents", "0", "--max-queue", "4",
                                      "--heads", "1-0,2-1", "--max-passage-tokens", "300", "--api-key", "k"])
    assert args.func is cmd_serve and args.port == 9001 and args.host == "127.0.0.1" and args.api_key == "k"
    limits = limits_from_args(args)
    assert limits.max_documents is None and limits.max_queue == 4 and limits.max_request_tokens == 32768
    settings = settings_from_args(args)
    assert settings.heads == "1-0,2-1" and settings.options["max_passage_tokens"] == 300
    with pytest.raises(ValueError, match="max_queue"):
        Limits(max_queue=0)


def test_missing_extra_is_a_one_line_error(monkeypatch):
    import importlib.util

    from qrhead_integrations.serve.config import require_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    with pytest.raises(ImportError) as info:
        require_extra("serve", "qrhead serve")
    message = str(info.value)
    assert "\n" not in message and "pip install 'qrhead-integrations[serve]'" in message and "uvicorn" in message


def test_serve_modules_import_without_fastapi_or_ray():
    code = ("import sys; import qrhead_integrations.cli, qrhead_integrations.serve, qrhead_integrations.serve.cli, "
            "qrhead_integrations.serve.ray; qrhead_integrations.cli.build_parser(); "
            "bad = [m for m in ('fastapi', 'uvicorn', 'ray', 'starlette') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the embedded default model ------------------------------------------------------------------------------


@pytest.mark.real_model
def test_default_model_behind_the_cohere_sdk():
    cohere = pytest.importorskip("cohere")
    data = json.loads((Path(__file__).parent / "data" / "handwritten_set.json").read_text())
    real = QRHeadScorer.from_pretrained()
    item = data["queries"][0]
    want = expected(real, item["query"], data["passages"])
    with BackgroundServer(create_app(real)) as s:
        res = cohere.ClientV2(api_key="unused", base_url=s.url).rerank(
            model="qrhead", query=item["query"], documents=data["passages"], top_n=3)
    assert [(r.index, r.relevance_score) for r in res.results] == want[:3]
    assert res.results[0].index == item["gold"]
