"""Ray Serve (2 CPU replicas behind the HTTP API) and Ray Data (2 actors) on a local Ray instance give the
results of a single process.

PyTorch CPU kernels may round differently with a different number of intra-op threads, and Ray runs
its workers with ``OMP_NUM_THREADS`` set from their CPU share, so the single-process reference runs
with the workers' thread count: then every score is bit-identical.
"""

from __future__ import annotations

import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")
pytest.importorskip("ray.data")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import torch  # noqa: E402
from conftest import load_tokenizer, tiny_model  # noqa: E402

from qrhead_integrations.serve import ScorerSettings  # noqa: E402
from qrhead_integrations.serve.ray import build_app, main, rerank_rows  # noqa: E402

pytestmark = pytest.mark.slow

DOCS = [
    "Shakespeare wrote Hamlet, the tragedy of the Prince of Denmark, around 1600.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "The Amazon river carries more water to the ocean than any other river.",
    "Paris is the capital and the largest city of France.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
]
OTHER_DOCS = ["Jupiter is the largest planet.", "Bach composed the Brandenburg Concertos.", "The Pacific is deep."]
QUERIES = ["Who wrote Hamlet?", "How high is Everest?", "Which river carries the most water?",
           "What is the capital of France?", "How do plants make sugar?", "Which planet is the largest?"]
CPUS_PER_WORKER = 0.5


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """A tiny random-weight model saved as a folder: each replica/actor loads it itself."""
    tok = load_tokenizer("smollm2")
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", tok, layers=4).save_pretrained(folder)
    tok.save_pretrained(folder)
    return ScorerSettings(model=str(folder), heads=[[1, 0], [2, 1], [3, 3]], device="cpu")


@pytest.fixture(scope="module")
def local_ray():
    # A busy CI machine (2 cores) can take longer than Ray Serve's 5 s to start its HTTP proxy; give the
    # proxy's readiness and health checks time (read by the Serve controller from the environment).
    for name, value in (("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120"),
                        ("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "120")):
        os.environ.setdefault(name, value)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 * 1024,
             logging_level="warning", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def worker_threads(local_ray):
    @ray.remote(num_cpus=CPUS_PER_WORKER)
    def threads() -> int:
        return torch.get_num_threads()

    return ray.get(threads.remote())


@pytest.fixture(scope="module")
def reference(settings, worker_threads):
    """The single-process scorer, run with the workers' torch thread count."""
    scorer = settings.load()

    def run(fn, *args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(worker_threads)
        try:
            return fn(scorer, *args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_serve_two_replicas_give_single_process_results(local_ray, settings, reference):
    from ray import serve

    try:  # what `serve run module:builder key=value` calls (private in Ray, hence the fallback)
        from ray.serve._private.api import call_user_app_builder_with_args_if_necessary as call_builder
    except ImportError:  # pragma: no cover
        def call_builder(builder, args):
            return builder(args)

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        # as `serve run qrhead_integrations.serve.ray:build_app model=... num_replicas=2 ...` passes them
        args = {"model": settings.model, "heads": "1-0,2-1,3-3", "device": "cpu", "num_replicas": "2",
                "num_cpus": str(CPUS_PER_WORKER), "max_queue": "16", "max_documents": "1000"}
        serve.run(call_builder(build_app, args), name="qrhead", route_prefix="/")
        status = serve.status().applications["qrhead"].deployments["qrhead-rerank"]
        assert status.replica_states.get("RUNNING") == 2
        requests = [(q, DOCS) for q in QUERIES] + [(q, OTHER_DOCS) for q in QUERIES]
        want = [reference(lambda s, q, d: [(r.index, r.score) for r in s.encode(d).rank(q)], q, d)
                for q, d in requests]
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=120) as http, ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda qd: http.post("/v2/rerank", json={"query": qd[0], "documents": qd[1]}),
                                      requests))
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            got = [[(x["index"], x["relevance_score"]) for x in r.json()["results"]] for r in responses]
            assert got == want
            tei = http.post("/rerank", json={"query": QUERIES[0], "texts": DOCS}).json()
            assert [(x["index"], x["score"]) for x in tei] == want[0]
            r = http.post("/v2/rerank", json={"query": "q", "documents": ["d"] * 1001})
            assert r.status_code == 413 and r.json()["limit"] == "max_documents"
            assert http.get("/health").json()["status"] == "ok"
        cohere = pytest.importorskip("cohere")
        res = cohere.ClientV2(api_key="unused", base_url=url).rerank(model="m", query=QUERIES[1], documents=DOCS,
                                                                      top_n=2)
        assert [(r.index, r.relevance_score) for r in res.results] == want[1][:2]
    finally:
        serve.shutdown()


def _rows():
    rows = [{"id": i, "query": q, "candidates": DOCS if i % 2 else OTHER_DOCS} for i, q in enumerate(QUERIES * 2)]
    rows.append({"id": len(rows), "query": "  ", "candidates": DOCS})  # fails alone
    return rows


def test_ray_data_batch_job_with_two_actors_gives_single_process_results(local_ray, settings, reference, tmp_path):
    """``python -m qrhead_integrations.serve.ray batch``: JSONL in, JSONL out in input order, through
    :func:`rerank_dataset` (``map_batches`` with 2 actors)."""
    rows = _rows()
    src, dst = tmp_path / "pairs.jsonl", tmp_path / "scored.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["batch", "--input", str(src), "--output", str(dst), "--model", settings.model,
                 "--heads", "1-0,2-1,3-3", "--device", "cpu", "--num-actors", "2",
                 "--num-cpus", str(CPUS_PER_WORKER), "--batch-size", "4", "--top-n", "3"])
    assert code == 1  # one row failed (empty query); the others are written
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    want = reference(rerank_rows, rows, top_n=3)
    assert [o["id"] for o in out] == [r["id"] for r in rows]
    assert [(o["query"], o["candidates"]) for o in out] == [(r["query"], r["candidates"]) for r in rows]
    assert [(o["scores"], o["ranking"], o["error"]) for o in out] == \
        [(w["scores"], w["ranking"], w["error"]) for w in want]
    assert out[-1]["error"].endswith("query is empty") and out[-1]["scores"] is None
    assert all(len(o["ranking"]) == 3 for o in out[:-1])
    first = reference(lambda s: s.encode(OTHER_DOCS).rank(QUERIES[0]))
    assert out[0]["scores"] == [r.score for r in sorted(first, key=lambda r: r.index)]
    assert out[0]["ranking"] == [r.index for r in first][:3]


def _replica_actors() -> list[tuple[str, str]]:
    return [(a["name"], a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::")]


def test_a_replica_killed_during_requests_loses_only_its_own(local_ray, settings, reference):
    """Two replicas, eight long requests in flight, one replica killed: the requests it held fail with a
    clean 5xx (a client retry succeeds), every other request gets its exact answer, the next requests are
    served, and Ray Serve replaces the replica."""
    from ray import serve

    from qrhead_integrations.serve import Limits
    from qrhead_integrations.serve.ray import deployment

    long_docs = [" ".join(f"word{i}x{j}" for j in range(150)) for i in range(30)]  # windows: about 1 s a request
    requests = [(q, long_docs) for q in QUERIES] + [(q, DOCS) for q in QUERIES[:2]]
    want = [reference(lambda s, q, d: [(r.index, r.score) for r in s.encode(d).rank(q)], q, d) for q, d in requests]
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        # at most 4 requests in flight per replica: the 8 requests are split 4 / 4 (Ray's router does not
        # balance evenly otherwise), so the killed replica can hold at most half of them
        serve.run(deployment(settings, Limits(max_queue=16), num_replicas=2, num_cpus=CPUS_PER_WORKER,
                             max_ongoing_requests=len(requests) // 2),
                  name="qrhead-faults", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=180) as http, ThreadPoolExecutor(len(requests)) as pool:
            futures = [pool.submit(http.post, "/v2/rerank", json={"query": q, "documents": d}) for q, d in requests]
            import time

            time.sleep(2.0)  # both replicas are busy with their share
            (victim, namespace), _ = _replica_actors()
            ray.kill(ray.get_actor(victim, namespace=namespace), no_restart=True)
            responses = [f.result(180) for f in futures]
        ok = [(r, w) for r, w in zip(responses, want) if r.status_code == 200]
        failed = [r for r in responses if r.status_code != 200]
        assert all(500 <= r.status_code < 600 for r in failed), [(r.status_code, r.text[:200]) for r in failed]
        assert len(ok) >= len(requests) // 2, f"{len(failed)} of {len(requests)} requests lost"
        for r, w in ok:
            assert [(x["index"], x["relevance_score"]) for x in r.json()["results"]] == w
        with httpx.Client(base_url=url, timeout=180) as http:  # served after the kill (the survivor, then the new one)
            for (q, d), w in zip(requests[-2:], want[-2:]):
                r = http.post("/v2/rerank", json={"query": q, "documents": d})
                assert r.status_code == 200 and [(x["index"], x["relevance_score"]) for x in r.json()["results"]] == w
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = serve.status().applications["qrhead-faults"].deployments["qrhead-rerank"].replica_states
            if states.get("RUNNING") == 2 and victim not in [n for n, _ in _replica_actors()]:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the killed replica was not replaced: {states}")
        print(f"replica kill: {len(ok)} answered, {len(failed)} failed "
              f"({sorted({r.status_code for r in failed})}) of {len(requests)}")
    finally:
        serve.shutdown()
