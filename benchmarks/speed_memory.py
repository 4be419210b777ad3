"""Speed and peak memory of QRHead scoring vs. a forward pass, a naive and the reference implementation.

Run from the repository root::

    python -m benchmarks.speed_memory                  # full CPU run: docs/performance.md + .png
    python -m benchmarks.speed_memory --quick          # smoke check: 512/1024 tokens, results/benchmarks/quick/
    python -m benchmarks.speed_memory --device cuda    # GPU: Llama-3.1-8B-shaped random model, 16K-64K tokens
    python -m benchmarks.speed_memory --report-only results/benchmarks/<run>.json   # redo the report

Every (model, length, method) is measured in a fresh subprocess: peak memory is that process's resident
set high-water mark (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` once the model is loaded)
minus its resident set at that moment, i.e. the memory the method needs on top of the loaded model; on a
GPU, ``torch.cuda.max_memory_allocated`` minus the allocated memory before the method. A memory cap
(``RLIMIT_AS``) turns an out-of-memory into a reported "OOM" instead of a crash of the run (or of other
jobs on the machine). Time is the median of a few runs after a warm-up run on a short prompt. A time
budget skips measurements whose predicted cost (from the previous length) would not fit.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT_MARK = "@@BENCH_RESULT@@ "

CPU_MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
CPU_LENGTHS = (1024, 2048, 4096, 8192, 16384)
GPU_MODELS = ("llama3-8b-random",)
GPU_LENGTHS = (16384, 32768, 65536)


# --- worker: one measurement in this process ----------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryMeter:
    """Peak memory of this process from :meth:`start` on, in bytes above the level at :meth:`start`."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.method = ""
        self.base = 0
        self._sampler = None
        self._peak = 0

    def start(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated - allocated before"
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            self.base = (_status_kb("VmRSS") or 0) * 1024
            self.method = "VmHWM - VmRSS (high-water mark reset via /proc/self/clear_refs)"
            return
        except OSError:
            pass
        import threading

        import psutil

        proc = psutil.Process()
        self.base = proc.memory_info().rss
        self._peak = self.base
        self.method = "RSS sampled every 5 ms (psutil) - RSS before"
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                self._peak = max(self._peak, proc.memory_info().rss)
                stop.wait(0.005)
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        self._sampler = (stop, thread)

    def peak(self) -> int:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self._sampler is None:
            return (_status_kb("VmHWM") or 0) * 1024 - self.base
        return self._peak - self.base


def _cap_address_space(cap_bytes: int) -> None:
    """Fail allocations (MemoryError / RuntimeError) beyond ``cap_bytes`` more address space (CPU only)."""
    import resource

    size = (_status_kb("VmSize") or 0) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + cap_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "cannot allocate memory", "out of memory",
                            "not enough memory", "failed to allocate", "std::bad_alloc"))


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from . import workloads as W

    result: dict[str, Any] = {"job": job, "status": "ok"}
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    bm = W.load_bench_model(job["model"], job["device"], job.get("dtype"), job.get("attn"), job.get("heads"))
    layers, heads, kv = bm.shape
    result.update(hf_id=bm.hf_id, heads=str(bm.heads), heads_source=bm.heads_source,
                  deepest_layer=bm.heads.deepest_layer, layers=layers, num_heads=heads, kv_heads=kv,
                  dtype=str(bm.dtype).removeprefix("torch."), attn=bm.attn, load_s=bm.load_seconds,
                  context=bm.context, threads=torch.get_num_threads())
    length = int(job["tokens"])
    if length > bm.context:
        if not job.get("extend_context", True):
            return {**result, "status": "n/a", "reason": f"beyond the model's context ({bm.context})"}
        W.extend_context(bm, length + 512)
        result["extended_context"] = True
    elif length + 512 > bm.context:
        # A prompt just under the context: the engine would reserve room for longer queries (encode()) and
        # split it into windows; measure the single-prompt cost every other method pays.
        W.extend_context(bm, length + 512)
    wl = W.pack(bm.tokenizer, length, int(job["passages"]))
    result.update(prompt_tokens=wl.tokens, passages=len(wl.passages), text=wl.source,
                  query_tokens=wl.prompt.query_span[1] - wl.prompt.query_span[0],
                  suffix_tokens=len(wl.prompt) - wl.prompt.suffix_start)
    method = job["method"]
    sync = (lambda: torch.cuda.synchronize(bm.device)) if bm.device.type == "cuda" else (lambda: None)

    def timer() -> float:
        sync()
        return time.perf_counter()

    if method == "naive":
        est = W.naive_bytes(bm, wl.tokens)
        result["naive_maps_bytes"] = est
        if est > job["mem_cap_bytes"]:
            return {**result, "status": "skipped",
                    "reason": f"attention maps alone need {est / 2**30:.1f} GiB > cap "
                              f"{job['mem_cap_bytes'] / 2**30:.1f} GiB"}

    # Warm-up on a short prompt (first-call costs: kernels, thread pools, lazy initialisation).
    warm = W.pack(bm.tokenizer, min(256, length), min(int(job["passages"]), 8))
    if method == "multiquery":
        W.multiquery(bm, warm, timer)
    else:
        W.prepare(method, bm, warm)()
    del warm

    meter = MemoryMeter(bm.device)
    if bm.device.type == "cpu":
        _cap_address_space(int(job["mem_cap_bytes"]))
    meter.start()
    result["memory_method"] = meter.method
    times: list[float] = []
    t_start = time.perf_counter()
    try:
        if method == "multiquery":
            mq = W.multiquery(bm, wl, timer, candidate_order="as_given")  # a placement that needs no query
            result.update(first_s=mq.first_s, extra_query_s=mq.extra_query_s,
                          extra_over_first=statistics.median(mq.extra_query_s) / mq.first_s,
                          placement="as_given")
            dq = W.multiquery(bm, wl, timer)  # the head set's own placement
            result.update(default_first_s=dq.first_s, default_extra_query_s=dq.extra_query_s,
                          default_placement=bm.heads.info.get("recommended_options", {}).get("candidate_order",
                                                                                             "reversed"))
            times = [mq.first_s]
        else:
            run = W.prepare(method, bm, wl)
            out = None
            for _ in range(int(job["reps"])):
                t0 = timer()
                out = run()
                times.append(timer() - t0)
            if isinstance(out, dict):
                result["output"] = out
            elif out is not None:
                scores = np.asarray(out, dtype=float)
                result["scores"] = [float(x) for x in scores]
                if not np.all(np.isfinite(scores)):
                    result["status"] = "error"
                    result["reason"] = "non-finite scores"
    except Exception as exc:
        result["status"] = "oom" if _is_oom(exc) else "error"
        result["reason"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        result["failed_after_s"] = time.perf_counter() - t_start
    result["peak_bytes"] = max(0, meter.peak())
    if times:
        result["times_s"] = times
        result["median_s"] = statistics.median(times)
    return result


def worker_main(spec: str) -> int:
    job = json.loads(spec)
    try:
        res = run_worker(job)
    except Exception as exc:
        import traceback

        traceback.print_exc()
        res = {"job": job, "status": "oom" if _is_oom(exc) else "error",
               "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    sys.stdout.write(RESULT_MARK + json.dumps(res) + "\n")
    sys.stdout.flush()
    return 0


# --- orchestrator ---------------------------------------------------------------------------------


def _default_reps(tokens: int) -> int:
    return 3 if tokens <= 2048 else 2 if tokens <= 4096 else 1


def _available_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        return 1 << 62


def machine_info(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        vm = psutil.virtual_memory()
        info["ram_gib"] = round(vm.total / 2**30, 1)
        info["ram_available_gib_at_start"] = round(vm.available / 2**30, 1)
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except (ImportError, OSError):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        try:
            import flash_attn

            info["flash_attn"] = getattr(flash_attn, "__version__", "installed")
        except ImportError:
            info["flash_attn"] = "not installed"
    return info


class Runner:
    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget_minutes * 60
        self.history: dict[tuple[str, str], tuple[int, float, float]] = {}  # (model, method) -> tokens, run, overhead
        self.naive_failed: dict[str, int] = {}
        self.results: list[dict[str, Any]] = []

    def elapsed(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:d}:{s % 60:02d}"

    def predict(self, model: str, method: str, tokens: int, reps: int) -> float | None:
        h = self.history.get((model, method))
        if h is None:
            return None
        t_prev, run_prev, overhead = h
        return overhead + reps * run_prev * (tokens / t_prev) ** 1.7

    def run(self, job: dict[str, Any], label: str) -> dict[str, Any]:
        args = self.args
        remaining = self.deadline - time.monotonic()
        model, method, tokens = job["model"], job["method"], job["tokens"]
        base = {"job": job}
        if method == "naive" and model in self.naive_failed and tokens > self.naive_failed[model]:
            return self._record({**base, "status": "skipped",
                                 "reason": f"out of memory already at {self.naive_failed[model]} tokens"}, label)
        guess = self.predict(model, method, tokens, job["reps"])
        if guess is not None and guess > remaining:
            return self._record({**base, "status": "skipped",
                                 "reason": f"time budget (predicted {guess / 60:.1f} min, {remaining / 60:.1f} left)"},
                                label)
        if remaining < 30:
            return self._record({**base, "status": "skipped", "reason": "time budget exhausted"}, label)
        if args.device.startswith("cuda"):  # the GPU's memory (the worker measures CUDA allocations)
            import torch

            cap = torch.cuda.get_device_properties(torch.device(args.device).index or 0).total_memory
        else:
            cap = min(int(args.mem_cap_gb * 2**30), _available_bytes() - int(1.5 * 2**30))
        job = {**job, "mem_cap_bytes": max(cap, 1 << 28)}
        timeout = min(remaining, args.job_timeout_minutes * 60)
        log = self.log_dir / f"{model}-{tokens}-{method}.log"
        print(f"[{self.elapsed()}] {label} ...", flush=True)
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        if args.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        started = time.monotonic()
        with open(log, "w") as errf:
            try:
                proc = subprocess.run([sys.executable, "-m", "benchmarks.speed_memory", "--_worker", json.dumps(job)],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errf, text=True,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                return self._record({**base, "status": "timeout",
                                     "reason": f"killed after {timeout / 60:.1f} min"}, label)
        wall = time.monotonic() - started
        res = None
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_MARK):
                res = json.loads(line[len(RESULT_MARK):])
        if res is None:
            sig = -proc.returncode if proc.returncode < 0 else None
            status = "oom" if sig == 9 else "error"
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            res = {**base, "status": status,
                   "reason": f"worker exited with {proc.returncode}" + (" (killed: out of memory?)" if sig == 9 else "")
                             + (f"; log tail: {tail}" if tail and status == "error" else "")}
        res["job"] = job
        res["wall_s"] = wall
        if res.get("median_s") is not None and res["status"] == "ok":
            reps = len(res.get("times_s", [1]))
            run_s = res["median_s"]
            self.history[(model, method)] = (res.get("prompt_tokens", tokens), run_s, max(0.0, wall - reps * run_s))
        if method == "naive" and res["status"] in ("oom", "skipped") and "time budget" not in res.get("reason", ""):
            self.naive_failed[model] = min(self.naive_failed.get(model, 1 << 30), tokens)
        return self._record(res, label)

    def _record(self, res: dict[str, Any], label: str) -> dict[str, Any]:
        self.results.append(res)
        st = res.get("status")
        if st == "ok":
            extra = ""
            if "extra_over_first" in res:
                extra = f", extra query {100 * res['extra_over_first']:.1f}% of the first"
            print(f"[{self.elapsed()}]   {label}: {res['median_s']:.2f} s, peak {res.get('peak_bytes', 0) / 2**20:.0f} MiB"
                  f"{extra}", flush=True)
        else:
            print(f"[{self.elapsed()}]   {label}: {st} ({res.get('reason', '')[:200]})", flush=True)
        return res


def build_jobs(args: argparse.Namespace) -> list[tuple[dict[str, Any], str]]:
    jobs: list[tuple[dict[str, Any], str]] = []
    common = dict(device=args.device, dtype=args.dtype, attn=args.attn, heads=args.heads,
                  extend_context=not args.no_extend_context, threads=args.threads)
    seen = set()

    def add(model: str, tokens: int, passages: int, method: str, reps: int) -> None:
        key = (model, tokens, passages, method)
        if key in seen:
            return
        seen.add(key)
        job = dict(common, model=model, tokens=tokens, passages=passages, method=method, reps=reps)
        jobs.append((job, f"{model} {tokens} tok x{passages} {method}"))

    for tokens in args.lengths:
        for model in args.models:
            for method in args.methods:
                add(model, tokens, args.passages, method, args.reps or _default_reps(tokens))
            if args.multiquery_length == tokens and "multiquery" in args.extras:
                add(model, tokens, args.passages, "multiquery", 1)
            if args.rankgpt_length == tokens and "rankgpt" in args.extras:
                add(model, tokens, args.rankgpt_passages, "engine", args.reps or _default_reps(tokens))
                add(model, tokens, args.rankgpt_passages, "rankgpt", args.rankgpt_reps)
    for model in args.models:  # lengths not in the grid
        if args.multiquery_length not in args.lengths and "multiquery" in args.extras:
            add(model, args.multiquery_length, args.passages, "multiquery", 1)
        if args.rankgpt_length not in args.lengths and "rankgpt" in args.extras:
            add(model, args.rankgpt_length, args.rankgpt_passages, "engine", args.reps or 2)
            add(model, args.rankgpt_length, args.rankgpt_passages, "rankgpt", args.rankgpt_reps)
    return jobs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke check: 512 and 1024 tokens, 2 runs each, small budget")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--models", default=None, help="comma-separated (packaged names, hub ids, folders, llama3-8b-random)")
    p.add_argument("--lengths", default=None, help="comma-separated prompt lengths in tokens")
    p.add_argument("--passages", type=int, default=None, help="passages per prompt (default 20 on CPU, 200 on GPU)")
    p.add_argument("--methods", default=",".join(("engine", "full_forward", "forward_to_deepest", "naive", "reference")))
    p.add_argument("--extras", default="multiquery,rankgpt", help="multiquery, rankgpt (comma-separated; '' for none)")
    p.add_argument("--reps", type=int, default=None, help="timed runs per measurement (default 3 / 2 / 1 by length)")
    p.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on GPU")
    p.add_argument("--attn", default=None, help="attention implementation (default: sdpa; flash_attention_2 on GPU when installed)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per measurement (default: torch's, i.e. all cores)")
    p.add_argument("--heads", default=None, help="head set (default: the model's registered set, else a fixed set)")
    p.add_argument("--multiquery-length", type=int, default=None)
    p.add_argument("--rankgpt-length", type=int, default=None)
    p.add_argument("--rankgpt-passages", type=int, default=20)
    p.add_argument("--rankgpt-reps", type=int, default=1)
    p.add_argument("--mem-cap-gb", type=float, default=20.0,
                   help="CPU memory cap per measurement (never more than available memory - 1.5 GB); "
                        "on a GPU the cap is the GPU's memory")
    p.add_argument("--budget-minutes", type=float, default=None, help="whole run (default 85; quick 20)")
    p.add_argument("--job-timeout-minutes", type=float, default=25.0)
    p.add_argument("--no-extend-context", action="store_true",
                   help="report n/a beyond a model's context instead of raising its limit for the timing")
    p.add_argument("--out-dir", default=None, help="report folder (default docs/; quick: results/benchmarks/quick)")
    p.add_argument("--report-name", default=None, help="report file stem (default performance / performance-gpu)")
    p.add_argument("--results-dir", default=str(REPO / "results" / "benchmarks"),
                   help="where raw results and per-measurement logs go (default results/benchmarks/)")
    p.add_argument("--report-only", default=None, help="write the report from a saved results JSON, run nothing")
    p.add_argument("--update", default=None,
                   help="re-measure the selected (model, length, method) jobs into this saved results JSON, "
                        "replacing the old measurements, and rewrite its report (the command is recorded)")
    p.add_argument("--dry-run", action="store_true", help="list the measurements and exit")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    args.models = csv(args.models) if args.models else list(GPU_MODELS if gpu else CPU_MODELS)
    if args.lengths:
        args.lengths = [int(x) for x in csv(args.lengths)]
    elif args.quick:
        args.lengths = [512, 1024]
    else:
        args.lengths = list(GPU_LENGTHS if gpu else CPU_LENGTHS)
    args.methods = csv(args.methods)
    args.extras = csv(args.extras)
    args.passages = args.passages or (200 if gpu else 20)
    if args.quick:
        args.reps = args.reps or 2
    args.multiquery_length = args.multiquery_length or (args.lengths[-1] if args.quick else (32768 if gpu else 8192))
    args.rankgpt_length = args.rankgpt_length or (args.lengths[-1] if args.quick else 4096)
    args.budget_minutes = args.budget_minutes or (20.0 if args.quick else 85.0)
    stem = args.report_name or ("performance-gpu" if gpu else "performance")
    args.out_dir = Path(args.out_dir) if args.out_dir else (REPO / "results" / "benchmarks" / "quick" if args.quick
                                                            else REPO / "docs")
    args.report_name = stem
    return args


def command_line(argv: list[str]) -> str:
    return "python -m benchmarks.speed_memory" + "".join(f" {a}" for a in argv)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    job = row.get("job", {})
    return job.get("model"), job.get("tokens"), job.get("method")


def update_run(args: argparse.Namespace, argv: list[str]) -> int:
    """Re-measure some jobs of a saved run (e.g. after an engine fix) and rewrite its report."""
    from .report import write_report

    path = Path(args.update)
    data = json.loads(path.read_text())
    jobs = build_jobs(args)
    print(f"{len(jobs)} measurements into {path}", flush=True)
    runner = Runner(args, path.parent)
    for n, (job, label) in enumerate(jobs, start=1):
        res = runner.run(job, f"({n}/{len(jobs)}) {label}")
        rows = data["results"]
        idx = next((i for i, r in enumerate(rows) if _key(r) == _key(res)), None)
        if idx is None:
            rows.append(res)
        else:
            rows[idx] = res
        path.write_text(json.dumps(data, indent=1))
    data.setdefault("updates", []).append({"command": command_line(argv),
                                           "at": _dt.datetime.now().isoformat(timespec="seconds"),
                                           "measurements": [label for _, label in jobs]})
    path.write_text(json.dumps(data, indent=1))
    md, png = write_report(data, args.out_dir, args.report_name)
    print(f"[{runner.elapsed()}] updated {path}, wrote {md}, {png}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--_worker" in argv:
        return worker_main(argv[argv.index("--_worker") + 1])
    args = parse_args(argv)
    from .report import write_report

    if args.report_only:
        data = json.loads(Path(args.report_only).read_text())
        md, png = write_report(data, args.out_dir, args.report_name)
        print(f"wrote {md} and {png}")
        return 0
    if args.dry_run:
        for n, (_, label) in enumerate(build_jobs(args), start=1):
            print(f"({n}) {label}")
        return 0
    if args.update:
        return update_run(args, argv)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.results_dir) / f"{args.report_name}-{stamp}{'-quick' if args.quick else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    jobs = build_jobs(args)
    print(f"{len(jobs)} measurements, budget {args.budget_minutes:.0f} min, logs in {run_dir}", flush=True)
    runner = Runner(args, run_dir)
    data: dict[str, Any] = {
        "command": command_line(argv), "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick, "device": args.device, "machine": machine_info(args.device),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "_worker"},
        "results": runner.results,
    }
    out_json = run_dir / "results.json"
    try:
        for n, (job, label) in enumerate(jobs, start=1):
            runner.run(job, f"({n}/{len(jobs)}) {label}")
            out_json.write_text(json.dumps(data, indent=1))
    except KeyboardInterrupt:
        print("interrupted: writing the report of what was measured", flush=True)
    data["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    data["duration_min"] = round((time.monotonic() - runner.t0) / 60, 1)
    out_json.write_text(json.dumps(data, indent=1))
    md, png = write_report(data, args.out_dir, args.report_name)
    print(f"[{runner.elapsed()}] wrote {out_json}, {md}, {png}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
