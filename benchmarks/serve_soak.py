"""Soak test of ``qrhead serve``: 16 clients for 10 minutes, good and hostile requests mixed (docs/serving.md).

    python -m benchmarks.serve_soak                       # embedded default model on CPU, ~13 minutes
    python -m benchmarks.serve_soak --minutes 2 --min-requests 200 --no-write   # a quick look

Starts ``qrhead serve`` in a subprocess on 127.0.0.1 (a free port) with an API key and tight limits
(``--max-documents 50 --max-request-tokens 4096 --max-body-bytes 200000 --max-queue 12``), then 16
client threads send requests back to back until both ``--minutes`` and ``--min-requests`` are reached.
Each request is drawn (seeded) from this mix, with the status it must get:

    good          60%  200  Cohere /v2/rerank or TEI /rerank, 3-10 documents (some with titles), 24 inputs
    malformed     10%  422  not JSON, no query, documents of the wrong type, top_n 0
    oversized      8%  413  51 documents, 4,500 tokens, or a 300 kB body (over the three limits)
    wrong key      8%  401  a wrong or missing key, sometimes with a body that is not JSON
    empty query    4%  400
    disconnect    10%  --   a whole request on a raw socket, closed without reading the answer

A 503 (queue full: 12 slots for 16 clients) is allowed for any request and retried after its
``Retry-After`` (1 s); it is counted, not failed. Every other status that differs from the expected one is a failure, and so is
any 5xx but 503. After the run, every good answer is compared with ``scorer.rank`` on the same input
(an in-process scorer, the same model and heads): same order, scores within 1e-6. Resident memory
(VmRSS of the server process) is read after warm-up (every good input once), every 10 s, and at the
end; latency (p50/p95, at the client, queueing included) is over the good requests' 200 answers.
Writes docs/results/serve-soak.json and the summary into docs/serving.md (between the serve-soak
markers).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import signal
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .serve_load import documents, free_port, question, start_server, write_between_markers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serving.md"
RAW = ROOT / "docs" / "results" / "serve-soak.json"
START, END = "<!-- serve-soak:start -->", "<!-- serve-soak:end -->"
KEY = "soak-test-key"
LIMITS = ["--max-documents", "50", "--max-request-tokens", "4096", "--max-body-bytes", "200000", "--max-queue", "12"]
KINDS = [("good", 60), ("malformed", 10), ("oversized", 8), ("wrong_key", 8), ("empty_query", 4), ("disconnect", 10)]
TOLERANCE = 1e-6


def good_inputs(n: int = 24) -> list[dict[str, Any]]:
    """``n`` distinct good requests: 3-10 documents of 30-50 words, every third with titles, every fourth TEI."""
    out = []
    for i in range(n):
        rng = random.Random(5000 + i)
        docs: list[Any] = documents(5000 + i, rng.randint(3, 10), rng.randint(30, 50))
        if i % 3 == 0:
            docs = [{"text": d, "title": f"Note {j}"} for j, d in enumerate(docs)]
        tei = i % 4 == 1 and i % 3 != 0  # TEI takes plain texts only
        out.append({"query": question(5000 + i), "documents": docs, "route": "/rerank" if tei else "/v2/rerank"})
    return out


def body_of(item: dict[str, Any]) -> dict[str, Any]:
    if item["route"] == "/rerank":
        return {"query": item["query"], "texts": item["documents"]}
    return {"model": "qrhead", "query": item["query"], "documents": item["documents"]}


def ranking_of(item: dict[str, Any], payload: Any) -> list[tuple[int, float]]:
    if item["route"] == "/rerank":
        return [(r["index"], r["score"]) for r in payload]
    return [(r["index"], r["relevance_score"]) for r in payload["results"]]


def bad_request(kind: str, rng: random.Random) -> tuple[str, dict[str, str], bytes, int]:
    """``(path, headers, body, expected status)`` of one hostile request."""
    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    if kind == "malformed":
        body = rng.choice([b"{not json", b'{"documents": ["a"]}', b'{"query": "q", "documents": 5}',
                           b'{"query": "q", "documents": ["a"], "top_n": 0}'])
        return "/v2/rerank", auth, body, 422
    if kind == "oversized":
        which = rng.randrange(3)
        if which == 0:
            body = json.dumps({"query": "q", "documents": ["short text"] * 51}).encode()
        elif which == 1:
            body = json.dumps({"query": "q", "documents": documents(rng.randrange(10**6), 30, 150)}).encode()
        else:
            body = json.dumps({"query": "q", "documents": ["x" * 1000] * 300}).encode()
        return "/v2/rerank", auth, body, 413
    if kind == "wrong_key":
        headers = {"content-type": "application/json"}
        if rng.random() < 0.5:
            headers["Authorization"] = "Bearer not-the-key"
        body = rng.choice([b"{not json", json.dumps({"query": "q", "documents": ["a", "b"]}).encode()])
        return "/v2/rerank", headers, body, 401
    if kind == "empty_query":
        return "/v2/rerank", auth, json.dumps({"query": "   ", "documents": ["a", "b"]}).encode(), 400
    raise ValueError(kind)


def hang_up(port: int, item: dict[str, Any]) -> None:
    """A client that sends a whole good request, then closes the connection without reading the answer."""
    data = json.dumps(body_of(item)).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {item['route']} HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {KEY}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(0.05)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--heads", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads of the server (OMP_NUM_THREADS)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--minutes", type=float, default=10.0, help="run at least this long (default 10)")
    p.add_argument("--min-requests", type=int, default=1000, help="and at least this many requests (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--report-only", action="store_true",
                   help=f"rewrite the summary in docs/serving.md from {RAW.relative_to(ROOT)} without running")
    args = p.parse_args(argv)
    if args.report_only:
        saved = json.loads(RAW.read_text())
        return write_summary(summary(saved["result"], saved["meta"]), args.no_write, saved["result"]["passed"])
    import httpx

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the server subprocess is stopped too
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"qrhead-soak-{port}.log"
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]
    proc = start_server(args, port, ["--api-key", KEY, *LIMITS], log=log)
    auth = {"Authorization": f"Bearer {KEY}"}
    inputs = good_inputs()
    lock = threading.Lock()
    counts: Counter = Counter()  # (kind, status) -> n
    failures: list[str] = []
    answers: list[tuple[int, list[tuple[int, float]]]] = []  # (input index, ranking) of every good 200
    latencies: list[float] = []
    rss_series: list[tuple[float, float]] = []
    try:
        with httpx.Client(base_url=url, timeout=600, headers=auth) as http:  # warm-up: every good input once
            for item in inputs:
                r = http.post(item["route"], json=body_of(item))
                r.raise_for_status()
        health = httpx.get(f"{url}/health", timeout=30).json()
        rss_warm = rss_mb(proc.pid)
        deadline = time.monotonic() + args.minutes * 60
        sent = [0]
        weights = [w for _, w in KINDS]

        def more() -> bool:
            with lock:
                if time.monotonic() < deadline or sent[0] < args.min_requests:
                    sent[0] += 1
                    return True
                return False

        def client(n: int) -> None:
            rng = random.Random(args.seed * 1000 + n)
            with httpx.Client(base_url=url, timeout=600) as http:
                while more():
                    kind = rng.choices([k for k, _ in KINDS], weights)[0]
                    try:
                        if kind == "disconnect":
                            hang_up(port, inputs[rng.randrange(len(inputs))])
                            with lock:
                                counts[(kind, "closed")] += 1
                            continue
                        if kind == "good":
                            i = rng.randrange(len(inputs))
                            path, headers, body, want = inputs[i]["route"], auth, body_of(inputs[i]), 200
                        else:
                            path, headers, body, want = bad_request(kind, rng)
                        while True:
                            t0 = time.perf_counter()
                            if isinstance(body, dict):
                                r = http.post(path, json=body, headers=headers)
                            else:
                                r = http.post(path, content=body, headers=headers)
                            dt = time.perf_counter() - t0
                            with lock:
                                counts[(kind, r.status_code)] += 1
                            if r.status_code == 503 and r.json().get("error_type") == "overloaded":
                                time.sleep(float(r.headers.get("retry-after", "1")))  # as the server asks
                                continue
                            break
                        with lock:
                            if r.status_code != want:
                                failures.append(f"{kind}: expected {want}, got {r.status_code}: {r.text[:200]}")
                            elif kind == "good":
                                answers.append((i, ranking_of(inputs[i], r.json())))
                                latencies.append(dt)
                    except httpx.HTTPError as exc:
                        with lock:
                            counts[(kind, type(exc).__name__)] += 1
                            failures.append(f"{kind}: {type(exc).__name__}: {exc}")

        def sample_memory(stop: threading.Event) -> None:
            while not stop.wait(10):
                rss_series.append((round(time.monotonic() - t_soak, 1), round(rss_mb(proc.pid), 1)))

        stop = threading.Event()
        t_soak = time.monotonic()
        sampler = threading.Thread(target=sample_memory, args=(stop,), daemon=True)
        sampler.start()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        soak_s = time.monotonic() - t_soak
        stop.set()
        time.sleep(2)
        end_health = httpx.get(f"{url}/health", timeout=30).json()
        rss_end = rss_mb(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except Exception:
            proc.kill()
    server_log = log.read_text() if log.exists() else ""

    # every good answer against scorer.rank on the same input (in this process, after the server stopped)
    from qrhead_integrations import QRHeadScorer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    scorer = QRHeadScorer.from_pretrained(args.model, args.heads, device=args.device or "cpu", dtype=args.dtype)
    want = [[(r.index, r.score) for r in scorer.rank(it["query"], it["documents"])] for it in inputs]
    worst = 0.0
    mismatched = 0
    for i, got in answers:
        same_order = [a for a, _ in got] == [a for a, _ in want[i]]
        diff = max(abs(x - y) for (_, x), (_, y) in zip(got, want[i]))
        worst = max(worst, diff)
        if not same_order or diff > TOLERANCE:
            mismatched += 1
    statuses = Counter()
    for (_, status), n in counts.items():
        statuses[str(status)] += n
    server_errors = {s: n for s, n in statuses.items() if s.isdigit() and int(s) >= 500 and s != "503"}
    total = sum(n for (_, s), n in counts.items() if s != 503)  # requests (a 503 retry is the same request)
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    result = {
        "requests": total, "attempts": sum(counts.values()), "soak_seconds": round(soak_s, 1),
        "by_kind": {k: {str(s): n for (kk, s), n in sorted(counts.items(), key=lambda x: str(x[0][1])) if kk == k}
                    for k, _ in KINDS},
        "statuses": dict(sorted(statuses.items())), "server_errors_not_503": server_errors,
        "unexpected": len(failures), "unexpected_examples": failures[:5],
        "good_answers": len(answers), "good_mismatched": mismatched, "good_max_abs_diff": worst,
        "p50_s": round(statistics.median(latencies), 3), "p95_s": round(q[18], 3),
        "throughput_rps": round(total / soak_s, 2), "good_throughput_rps": round(len(answers) / soak_s, 2),
        "rss_warm_mb": round(rss_warm, 1), "rss_end_mb": round(rss_end, 1),
        "rss_max_mb": max([r for _, r in rss_series] + [rss_end]), "rss_change": round(rss_end / rss_warm - 1, 4),
        "rss_series": rss_series, "server_alive_at_end": alive,
        "server_stats": end_health["stats"], "pending_at_end": end_health["queue"]["pending"],
        "server_log_tracebacks": server_log.count("Traceback"),
    }
    ok = (not server_errors and not failures and mismatched == 0 and abs(result["rss_change"]) <= 0.10
          and alive and result["pending_at_end"] == 0 and result["server_log_tracebacks"] == 0)
    result["passed"] = ok
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.serve_soak", *[a for a in given if a != "--no-write"]])
    meta = {
        "date": _dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()})"
                   + (f", {args.device}" if args.device else ""),
        "command": command, "model": health["model"], "heads": health["head_set"], "clients": args.clients,
        "limits": " ".join(LIMITS), "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "total_seconds": round(time.monotonic() - t_start, 1),
    }
    if not args.no_write:
        RAW.parent.mkdir(parents=True, exist_ok=True)
        RAW.write_text(json.dumps({"meta": meta, "result": result}, indent=1) + "\n")
    return write_summary(summary(result, meta), args.no_write, ok)


def write_summary(text: str, no_write: bool, ok: bool) -> int:
    print(text)
    if not no_write:
        write_between_markers(DOC, START, END, text, f"{RAW.relative_to(ROOT)}")
    return 0 if ok else 1


def summary(r: dict[str, Any], meta: dict[str, Any]) -> str:
    kinds = []
    for kind, _ in KINDS:
        got = r["by_kind"][kind]
        requests = sum(n for s, n in got.items() if s != "503")
        kinds.append(f"| {kind.replace('_', ' ')} | {requests} | " + ", ".join(f"{s}: {n}" for s, n in got.items()) + " |")
    return "\n".join([
        f"Measured {meta['date']} on {meta['machine']} with `{meta['command']}` (model: {meta['model']}; "
        f"{meta['clients']} clients; limits `{meta['limits']}`; 1-minute load average {meta['load_average'][0]} "
        f"before, {meta['load_average'][1]} after). **{'Passed' if r['passed'] else 'FAILED'}.**",
        "",
        "| kind | requests | attempts by status (a 503, queue full, is retried after its Retry-After) |",
        "|---|---:|---|",
        *kinds,
        "",
        f"- {r['requests']} requests ({r['attempts']} attempts) in {r['soak_seconds']:.0f} s: "
        f"{r['throughput_rps']} requests/s, {r['good_throughput_rps']} good answers/s; "
        f"good requests' latency p50 {r['p50_s']} s, p95 {r['p95_s']} s (at the client, of the attempt that was "
        "answered, queueing included: 16 clients share one model worker).",
        f"- 5xx other than 503: {sum(r['server_errors_not_503'].values())}; statuses other than expected: "
        f"{r['unexpected']}; tracebacks in the server's log: {r['server_log_tracebacks']}; server up at the end: "
        f"{'yes' if r['server_alive_at_end'] else 'no'}; requests pending at the end: {r['pending_at_end']}.",
        f"- Good answers equal to `scorer.rank` on the same input: {r['good_answers'] - r['good_mismatched']} of "
        f"{r['good_answers']} (same order, largest score difference {r['good_max_abs_diff']:.1e}).",
        f"- Resident memory of the server: {r['rss_warm_mb']:.0f} MB after warm-up, {r['rss_end_mb']:.0f} MB at the "
        f"end ({100 * r['rss_change']:+.1f}%), at most {r['rss_max_mb']:.0f} MB (sampled every 10 s).",
        f"- The server's counters: {r['server_stats']['completed']} completed, {r['server_stats']['failed']} failed "
        f"(refused with 4xx), {r['server_stats']['rejected']} rejected (queue full), "
        f"{r['server_stats']['cancelled']} dropped while queued and {r['server_stats'].get('abandoned', 0)} "
        f"abandoned (their client went away), {r['server_stats']['encodings']} encodings.",
    ])


if __name__ == "__main__":
    sys.exit(main())
