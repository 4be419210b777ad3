"""The speed/memory benchmark's workloads (benchmarks/): the compared implementations agree, prompts hit
their length, the report renders. No timing is asserted (speed targets live in docs/performance.md).

The end-to-end smoke test of ``python -m benchmarks.speed_memory --quick`` starts several subprocesses
(about a minute on 2 cores); it is marked ``slow`` and runs only with ``QRHEAD_BENCH_SMOKE=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, TOKENIZER_DIR

sys.path.insert(0, str(REPO))
W = pytest.importorskip("benchmarks.workloads")


@pytest.fixture(scope="module")
def tiny():
    if not (TOKENIZER_DIR / "llama3" / "tokenizer.json").is_file():
        pytest.skip("llama3 tokenizer not fetched: run scripts/fetch_test_tokenizers.sh")
    bm = W.load_bench_model("llama3-tiny-random", "cpu")
    with __import__("torch").no_grad():  # peaked attention, as in conftest.tiny_model
        for name, p in bm.model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(8.0)
    return bm


def test_pack_reaches_the_target_length(tiny):
    for target, n in ((300, 6), (700, 20)):
        wl = W.pack(tiny.tokenizer, target, n)
        assert len(wl.passages) == n and target - n <= wl.tokens <= target
        assert wl.null_prompt.passage_spans == wl.prompt.passage_spans  # same prefix, other query
        assert len(wl.extra_queries) == 4


def test_implementations_agree(tiny):
    wl = W.pack(tiny.tokenizer, 400, 6)
    out = {m: W.prepare(m, tiny, wl)() for m in W.METHODS}
    assert out["full_forward"] is None and out["forward_to_deepest"] is None
    engine = np.asarray(out["engine"])
    assert engine.shape == (6,) and np.isfinite(engine).all() and np.ptp(engine) > 0
    np.testing.assert_allclose(out["reference"], engine, rtol=0, atol=1e-6)  # written independently
    np.testing.assert_allclose(out["naive"], engine, rtol=0, atol=1e-6)  # transformers' own eager maps


def test_engine_agrees_with_reference_under_the_ranked_placement(tiny):
    """The embedded default places passages by BM25 ('ranked'); the workload hands them over in that order,
    so the engine's prompt is the one the other methods run."""
    from qrhead_integrations import QRHeadScorer

    wl = W.pack(tiny.tokenizer, 400, 6)
    ranked = QRHeadScorer.from_model(tiny.model, tiny.tokenizer, heads=tiny.heads, candidate_order="ranked")
    engine = np.asarray(ranked.score(wl.query, wl.passages))
    np.testing.assert_allclose(W.prepare("reference", tiny, wl)(), engine, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ranked.score(wl.query, wl.passages[::-1])[::-1], engine, rtol=0, atol=1e-9)


def test_implementations_agree_with_fitted_head_weights(tiny):
    """A head set with fitted weights (as the embedded default's): the reference and the naive maps weight
    the heads as the engine does."""
    import dataclasses

    heads = dataclasses.replace(tiny.heads, weights=tuple(0.5 + i for i in range(len(tiny.heads.heads))))
    bm = dataclasses.replace(tiny, heads=heads)
    wl = W.pack(bm.tokenizer, 400, 6)
    engine = np.asarray(W.prepare("engine", bm, wl)())
    np.testing.assert_allclose(W.prepare("reference", bm, wl)(), engine, rtol=0, atol=1e-6)
    np.testing.assert_allclose(W.prepare("naive", bm, wl)(), engine, rtol=0, atol=1e-6)


def test_multiquery_and_rankgpt(tiny):
    wl = W.pack(tiny.tokenizer, 300, 4)
    for placement in ("auto", "as_given", "ranked"):
        mq = W.multiquery(tiny, wl, __import__("time").perf_counter, candidate_order=placement)
        assert mq.first_s > 0 and len(mq.extra_query_s) == 4
    out = W.prepare("rankgpt", tiny, wl)()
    target = len(tiny.tokenizer(" > ".join(f"[{i}]" for i in range(4, 0, -1)), add_special_tokens=False)["input_ids"])
    assert out["new_tokens"] == target + 1 and out["prompt_tokens"] > wl.tokens


def test_parse_permutation():
    assert W.parse_permutation("[2] > [1] > [3]", 3) == ([1, 0, 2], True)
    assert W.parse_permutation("[3] > [3] > [9] blah", 3) == ([2, 0, 1], False)


def test_report_renders(tmp_path):
    from benchmarks.report import write_report

    rows = []
    info = dict(status="ok", hf_id="x/y", heads="1-0,2-1", heads_source="fixed", deepest_layer=2, layers=4,
                num_heads=4, kv_heads=2, dtype="float32", attn="sdpa", context=8192, threads=2, text="text",
                query_tokens=10, suffix_tokens=30)
    for n in (4096, 8192, 16384):
        f = n / 4096
        for method, t, mem in (("engine", 1.0, 100), ("full_forward", 1.3, 60), ("forward_to_deepest", 0.95, 50),
                               ("reference", 1.4, 160)):
            rows.append({**info, "job": {"model": "m", "tokens": n, "passages": 20, "method": method},
                         "prompt_tokens": n - 3, "median_s": t * f ** 1.3, "peak_bytes": mem * f * 2**20,
                         "scores": [0.1, 0.2], **({"extended_context": True} if n > 8192 else {})})
        rows.append({"job": {"model": "m", "tokens": n, "passages": 20, "method": "naive", "mem_cap_bytes": 20 << 30},
                     "status": "oom" if n == 4096 else "skipped", "reason": "out of memory"})
    rows.append({**info, "job": {"model": "m", "tokens": 8192, "passages": 20, "method": "multiquery"},
                 "first_s": 2.0, "extra_query_s": [0.1, 0.12], "extra_over_first": 0.055, "peak_bytes": 1e8,
                 "median_s": 2.0})
    rows.append({**info, "job": {"model": "m", "tokens": 4096, "passages": 20, "method": "rankgpt"},
                 "median_s": 9.0, "output": {"prompt_tokens": 4500, "new_tokens": 80, "complete_permutation": True}})
    data = {"command": "python -m benchmarks.speed_memory", "quick": False, "device": "cpu", "machine": {"cpu": "X"},
            "settings": {"passages": 20}, "results": rows}
    md, png = write_report(data, tmp_path, "performance")
    text = md.read_text()
    assert "| 4K (4093) | 1.00 | 1.30 |" in text and "16K* (16381)" in text
    assert "engine <= 1.0x full forward | 4K: 0.77x" in text and "**met**" in text
    assert "at 4K: >= 3x faster than the reference algorithm | 1.40x | **missed**" in text
    assert "naive: oom at a 20 GiB cap" in text and "5.5%" in text and "| 9.00 | 1.00 | 9.00x | yes |" in text
    assert "What to expect on a GPU" in text
    if png.exists():
        assert png.stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("QRHEAD_BENCH_SMOKE"), reason="set QRHEAD_BENCH_SMOKE=1 to run")
@pytest.mark.timeout(900)
def test_quick_mode_end_to_end(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.speed_memory", "--quick", "--models", "llama3-tiny-random",
           "--lengths", "256", "--methods", "engine,full_forward,forward_to_deepest,naive,reference",
           "--extras", "multiquery", "--threads", "1", "--out-dir", str(tmp_path / "docs"),
           "--results-dir", str(tmp_path / "results")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = (tmp_path / "docs" / "performance.md").read_text()
    assert "Smoke check only" in text and "### Time (seconds, median)" in text
    (run,) = list((tmp_path / "results").iterdir())
    data = json.loads((run / "results.json").read_text())
    assert {r["job"]["method"]: r["status"] for r in data["results"]} == {
        "engine": "ok", "full_forward": "ok", "forward_to_deepest": "ok", "naive": "ok", "reference": "ok",
        "multiquery": "ok"}
    assert all(r["peak_bytes"] >= 0 for r in data["results"])
