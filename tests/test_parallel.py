"""Data-parallel detection and mass collection (torch.distributed, gloo on CPU): same results as one process.

The two-process run goes through the real launcher (``torch.distributed.run``, what ``torchrun`` and
``accelerate launch`` start) and the real CLI (``qrhead detect``); both runs use one thread per process so
their floating-point results can be compared bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_tokenizer, tiny_model

from qrhead_integrations.engine import parallel

HERE = Path(__file__).resolve().parent
WORKER = HERE / "parallel_worker.py"

TEXTS = [
    "Alpha Centauri is the closest star system to the Sun.",
    "Honey bees communicate with a waggle dance.",
    "The Danube flows through ten countries.",
    "Penguins live in the southern hemisphere.",
    "Mount Everest is the highest mountain above sea level.",
    "The violin has four strings tuned in fifths.",
]
QUERIES = ["closest star?", "how do bees talk?", "which river crosses ten countries?", "where do penguins live?",
           "highest mountain?", "how many strings on a violin?", "bee dance", "stars near the sun"]


def test_single_process_helpers(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.world_size() == 1 and parallel.rank() == 0 and parallel.is_main_process()
    assert not parallel.is_distributed() and not parallel.init() and parallel.local_device() is None
    assert parallel.shard_indices(5) == [0, 1, 2, 3, 4]
    assert parallel.all_gather({"a": 1}) == [{"a": 1}] and parallel.broadcast(7) == 7
    seen = []
    out = parallel.map_sharded(lambda i, x: x * 10, [3, 1, 2], on_result=lambda i, v: seen.append((i, v)))
    assert out == [30, 10, 20] and seen == [(0, 30), (1, 10), (2, 20)]
    with pytest.raises(ZeroDivisionError):  # a single process raises the original error
        parallel.map_sharded(lambda i, x: 1 / x, [1, 0])


def test_one_gpu_per_process(monkeypatch):
    import torch

    from qrhead_integrations.engine.loading import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert parallel.local_device() == "cuda:1" and resolve_device(None) == torch.device("cuda:1")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert parallel.local_device() is None and resolve_device(None) == torch.device("cuda")


def test_shards_are_a_partition(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    shards = []
    for r in range(3):
        monkeypatch.setenv("RANK", str(r))
        shards.append(parallel.shard_indices(10))
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert not parallel.is_main_process()  # rank 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = load_tokenizer("smollm2")
    root = tmp_path_factory.mktemp("parallel")
    model_dir = root / "model"
    tiny_model("llama", tok, layers=3).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rows = []
    for n, q in enumerate(QUERIES):  # 8 examples: 4 per process, uneven passage counts
        k = 3 + n % 4
        passages = [TEXTS[(n + i) % len(TEXTS)] for i in range(k)]
        rows.append({"query": q, "passages": passages, "gold": [n % k]})
    data = root / "examples.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root, model_dir, data


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stderr


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def single(setup):
    root, model_dir, data = setup
    out = root / "single"
    out.mkdir()
    _run([sys.executable, str(WORKER), str(model_dir), str(data), str(out)], root)
    return out


@pytest.mark.timeout(600)
def test_two_processes_match_one(setup, single):
    root, model_dir, data = setup
    dual = root / "dual"
    dual.mkdir()
    log = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          str(WORKER), str(model_dir), str(data), str(dual)], root)

    assert "detecting heads (rank 0 of 2)" in log  # really two processes
    # Detection through `qrhead detect`: identical head set and per-head scores; one file, from rank 0.
    one = json.loads((single / "heads.json").read_text())
    two = json.loads((dual / "heads.json").read_text())
    one["info"].pop("date", None)
    two["info"].pop("date", None)
    assert one == two

    # Mass collection: every process returned the full result, equal to the single process's.
    d_single = json.loads((single / "digest-0.json").read_text())
    digests = [json.loads((dual / f"digest-{r}.json").read_text()) for r in (0, 1)]
    assert d_single["world"] == 1 and all(d["world"] == 2 for d in digests)
    assert d_single["n"] == len(QUERIES) and all(d["sha256"] == d_single["sha256"] for d in digests)
    with np.load(single / "masses.npz") as a, np.load(dual / "masses.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])

    # Only rank 0 wrote: the same cache files, byte for byte, and nothing else.
    assert _files(single / "cache") == _files(dual / "cache")
    assert sorted(p.name for p in dual.iterdir()) == sorted([p.name for p in single.iterdir()] + ["digest-1.json"])


@pytest.mark.timeout(600)
def test_accelerate_launch_cli_detect(setup, single):
    """`accelerate launch -m qrhead_integrations.cli detect` (``--multi_gpu`` is accelerate's multi-process
    launcher; on a CPU-only machine it starts gloo processes)."""
    pytest.importorskip("accelerate")
    root, model_dir, data = setup
    out = root / "accelerate"
    out.mkdir()
    log = _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
          "-m", "qrhead_integrations.cli", "detect", "--model", str(model_dir), "--data", str(data),
          "--out", str(out / "heads.json"), "--top-k", "5", "--shuffle", "--seed", "3", "--limit", "100"], root)
    one = json.loads((single / "heads.json").read_text())
    two = json.loads((out / "heads.json").read_text())
    one["info"].pop("date", None)
    two["info"].pop("date", None)
    assert one == two
    assert [p.name for p in out.iterdir()] == ["heads.json"]
    assert "detecting heads (rank 0 of 2)" in log and log.count("detecting on ") == 1
