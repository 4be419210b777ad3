"""Load test of ``qrhead serve``: throughput and latency at 1/4/16 concurrent clients (docs/serving.md).

    python -m benchmarks.serve_load --threads 1          # embedded default model on CPU, ~4 minutes
    python -m benchmarks.serve_load --device cuda --requests-scale 8
    python -m benchmarks.serve_load --no-write           # print the table, leave docs/ alone

Starts ``qrhead serve`` in a subprocess on 127.0.0.1 (a free port), then, for each scenario, clients in
threads (one HTTP connection each) send ``POST /v2/rerank`` requests of 20 documents of ~60 words back
to back. Latency is measured at the client (queueing included); throughput is requests per second of
wall time. Scenarios: every request with its own documents at 1, 4 and 16 clients, and 16 clients
asking different questions over the same 20 documents (their queued requests share one encoding).
The server's /health counters give the encodings each scenario needed. Writes the table into
docs/serving.md (between the serve-load markers) and the raw numbers to docs/results/serve-load.json.
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
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serving.md"
RAW = ROOT / "docs" / "results" / "serve-load.json"
START, END = "<!-- serve-load:start -->", "<!-- serve-load:end -->"

TOPICS = {
    "rivers": "river delta water flood basin current bank stream valley rain estuary flow",
    "space": "planet orbit star telescope moon rocket galaxy comet gravity satellite launch",
    "music": "symphony composer violin concert melody opera orchestra piano rhythm choir",
    "cooking": "bread oven flour recipe spice butter kitchen soup roast sugar bake",
    "history": "empire king battle treaty dynasty war castle revolution century archive",
    "medicine": "doctor vaccine patient fever clinic virus surgery heart blood therapy",
    "football": "goal match league player coach stadium season referee striker cup",
    "computing": "processor memory software network compiler server code chip data cache",
}
FILLER = ("the of and a to in is was for on that by with as at from this it its were which their also "
          "after into more most many during between").split()


def documents(seed: int, n: int, words: int) -> list[str]:
    """``n`` synthetic documents of ``words`` words, each mostly about one topic (deterministic)."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    out = []
    for i in range(n):
        topic = TOPICS[names[(seed + i) % len(names)]].split()
        out.append(" ".join(rng.choice(topic) if rng.random() < 0.45 else rng.choice(FILLER)
                            for _ in range(words)).capitalize() + ".")
    return out


def question(seed: int) -> str:
    rng = random.Random(seed * 7919)
    topic = TOPICS[sorted(TOPICS)[seed % len(TOPICS)]].split()
    return f"What do we know about the {rng.choice(topic)} and the {rng.choice(topic)}?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, extra: list[str] | None = None,
                 log: Path | None = None) -> subprocess.Popen:
    """``qrhead serve`` in a subprocess on 127.0.0.1:``port`` (``extra``: more flags, later ones win;
    ``log``: a file for its stderr, which a long run must drain, else a pipe)."""
    cmd = [sys.executable, "-m", "qrhead_integrations.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--max-queue", "256", *(extra or [])]
    for flag in ("model", "heads", "device", "dtype"):
        value = getattr(args, flag)
        if value is not None:
            cmd += [f"--{flag}", value]
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    err = open(log, "w") if log is not None else subprocess.PIPE
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text() if log is not None else proc.stderr.read()
            raise SystemExit(f"server exited with {proc.returncode}: {text}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start within 300 s")


def run_scenario(url: str, name: str, clients: int, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    import httpx

    stats_before = httpx.get(f"{url}/health", timeout=30).json()["stats"]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(len(payloads)))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=900) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = http.post("/v2/rerank", json=payloads[i])
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200 and len(r.json()["results"]) == len(payloads[i]["documents"]):
                        latencies.append(dt)
                    else:
                        errors.append(f"{r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stats_after = httpx.get(f"{url}/health", timeout=30).json()["stats"]
    if errors:
        raise SystemExit(f"{name}: {len(errors)} failed requests, e.g. {errors[0]}")
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    encodings = stats_after["encodings"] - stats_before["encodings"]
    row = {
        "scenario": name, "clients": clients, "requests": len(latencies), "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 3), "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(q[18], 3), "encodings": encodings,
        "requests_per_encoding": round(len(latencies) / max(encodings, 1), 2),
    }
    print(f"{name:>9} x{clients:<3} {row['requests']:>4} req  {row['throughput_rps']:7.3f} req/s  "
          f"p50 {row['p50_s']:7.2f} s  p95 {row['p95_s']:7.2f} s  encodings {encodings}", file=sys.stderr)
    return row


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']} with `{meta['command']}` "
        f"(model: {meta['model']}; {meta['docs']} documents of ~{meta['words']} words per request, "
        f"~{meta['tokens_per_request']} tokens; latency at the client, queueing included; 1-minute load "
        f"average {meta['load_average'][0]} before, {meta['load_average'][1]} after).",
        "",
        "| documents | clients | requests | throughput (req/s) | p50 latency (s) | p95 latency (s) | encodings | requests per encoding |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        docs = "own per request" if r["scenario"] == "distinct" else "shared (same 20)"
        lines.append(f"| {docs} | {r['clients']} | {r['requests']} | {r['throughput_rps']:.3f} | {r['p50_s']:.2f} | "
                     f"{r['p95_s']:.2f} | {r['encodings']} | {r['requests_per_encoding']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--heads", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--docs", type=int, default=20, help="documents per request (default 20)")
    p.add_argument("--words", type=int, default=60, help="words per document (default 60)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the server (OMP_NUM_THREADS); 1 is steadier on a busy CPU")
    p.add_argument("--requests-scale", type=float, default=1.0,
                   help="multiply every scenario's request count (default counts fit ~4 minutes on 2 CPU cores)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = p.parse_args(argv)

    def count(n: int) -> int:
        return max(1, round(n * args.requests_scale))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the server subprocess is stopped too
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]
    proc = start_server(args, port)
    rows = []
    try:
        import httpx

        health = httpx.get(f"{url}/health", timeout=30).json()
        sample = documents(0, args.docs, args.words)
        warm = {"model": "qrhead", "query": question(0), "documents": sample}
        for _ in range(2):
            httpx.post(f"{url}/v2/rerank", json=warm, timeout=900).raise_for_status()
        tokens = httpx.post(f"{url}/v2/rerank", json=warm, timeout=900).json()["usage"]["total_tokens"]
        seed = 1000
        for clients in args.concurrency:
            n = count(max(8, clients))  # at least one request per client, 8 at least
            payloads = [{"model": "qrhead", "query": question(seed + i), "documents": documents(seed + i, args.docs,
                                                                                                  args.words)}
                        for i in range(n)]
            seed += n
            rows.append(run_scenario(url, "distinct", clients, payloads))
        shared_clients = max(args.concurrency)
        shared = documents(seed, args.docs, args.words)
        payloads = [{"model": "qrhead", "query": question(seed + i), "documents": shared}
                    for i in range(count(4 * shared_clients))]
        rows.append(run_scenario(url, "shared", shared_clients, payloads))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.serve_load", *[a for a in given if a != "--no-write"]])
    meta = {
        "date": _dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()})"
                   + (f", {args.device}" if args.device else ""),
        "threads": args.threads, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "command": command, "model": health["model"], "heads": health["head_set"],
        "docs": args.docs, "words": args.words, "tokens_per_request": tokens,
        "total_seconds": round(time.monotonic() - t_start, 1),
    }
    text = table(rows, meta)
    print(text)
    if not args.no_write:
        RAW.parent.mkdir(parents=True, exist_ok=True)
        RAW.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        write_between_markers(DOC, START, END, text, f"{RAW.relative_to(ROOT)}")
    return 0


def write_between_markers(doc: Path, start: str, end: str, text: str, source: str) -> bool:
    """Replace what lies between ``start`` and ``end`` in ``doc`` with ``text`` (the benchmarks' tables in
    docs/); False, with a message, when the markers are missing."""
    content = doc.read_text(encoding="utf-8")
    if start not in content or end not in content:
        print(f"{doc} has no {start} ... {end} markers: not written", file=sys.stderr)
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")
    print(f"wrote {doc.relative_to(ROOT)} (from {source})", file=sys.stderr)
    return True


if __name__ == "__main__":
    sys.exit(main())
