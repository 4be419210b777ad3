"""The converted-model cache heals itself: damaged files are detected and rebuilt, leftovers of killed
conversions are removed, concurrent conversions (two processes) both succeed, folders are shareable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrhead_integrations.engine.loading import CONVERSION_MARKER, converted_folder, resolve_source, verify_converted

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache with the default model converted once (shared by the tests below)."""
    root = tmp_path_factory.mktemp("qrhead-cache")
    old = os.environ.get("QRHEAD_CACHE")
    os.environ["QRHEAD_CACHE"] = str(root)
    try:
        dest = converted_folder(resolve_source(None))
        yield root, dest
    finally:
        if old is None:
            os.environ.pop("QRHEAD_CACHE", None)
        else:
            os.environ["QRHEAD_CACHE"] = old


def _records(dest: Path) -> dict:
    return json.loads((dest / CONVERSION_MARKER).read_text())["files"]


def test_conversion_records_hashes_and_shareable_permissions(cache):
    _, dest = cache
    files = _records(dest)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in files.values())
    assert verify_converted(dest) is None
    mode = dest.stat().st_mode & 0o777
    assert mode & 0o055 == 0o055 & ~_umask()  # group/others can read and enter (mkdtemp's 0700 is not kept)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("damage", ["truncate weights", "zeros in weights", "delete config", "delete tokenizer",
                                    "edit config"])
def test_damage_is_detected(cache, damage, tmp_path):
    _, dest = cache
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(dest), str(copy)], check=True)
    weights = copy / "model.safetensors"
    if damage == "truncate weights":
        with open(weights, "r+b") as f:
            f.truncate(weights.stat().st_size // 2)
    elif damage == "zeros in weights":
        stat = weights.stat()
        with open(weights, "r+b") as f:
            f.seek(stat.st_size // 2)
            f.write(b"\0" * (1 << 20))
    elif damage == "delete config":
        (copy / "config.json").unlink()
    elif damage == "delete tokenizer":
        (copy / "tokenizer.json").unlink()
    else:
        cfg = json.loads((copy / "config.json").read_text())
        cfg["num_hidden_layers"] = 3
        (copy / "config.json").write_text(json.dumps(cfg))
    assert verify_converted(copy) is not None


def test_a_damaged_entry_is_rebuilt_on_load(cache, caplog):
    _, dest = cache
    weights = dest / "model.safetensors"
    good = _records(dest)["model.safetensors"]["sha256"]
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 1000)
    with caplog.at_level("WARNING", logger="qrhead_integrations"):
        again = converted_folder(resolve_source(None))
    assert again == dest and "rebuilding" in caplog.text
    assert verify_converted(dest, full=True) is None and _records(dest)["model.safetensors"]["sha256"] == good


def test_leftovers_of_a_killed_conversion_are_removed(cache):
    _, dest = cache
    left = dest.parent / f"{dest.name}.tmp-abc123"
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"\0" * 1024)
    join = dest.parent / f"{dest.name}.tmp-join.gguf"
    join.write_bytes(b"GGUF")
    converted_folder(resolve_source(None))
    assert not left.exists() and not join.exists()


def test_two_processes_convert_into_one_empty_cache(tmp_path):
    env = dict(os.environ, QRHEAD_CACHE=str(tmp_path / "shared"), OMP_NUM_THREADS="1")
    code = ("from qrhead_integrations.engine.loading import load_model; m = load_model(None); "
            "print(m.model.config.num_hidden_layers)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == ["30", "30"]
    models = tmp_path / "shared" / "models"
    assert [p.name for p in models.iterdir() if ".tmp-" in p.name] == []
    (dest,) = [p for p in models.iterdir() if p.is_dir()]
    assert verify_converted(dest, full=True) is None


def test_old_markers_without_hashes_count_as_broken(cache, tmp_path):
    _, dest = cache
    copy = tmp_path / "old"
    subprocess.run(["cp", "-a", str(dest), str(copy)], check=True)
    marker = copy / CONVERSION_MARKER
    info = json.loads(marker.read_text())
    info.pop("files")
    marker.write_text(json.dumps(info))
    assert verify_converted(copy) == "it records no file hashes (made by an older version)"


def test_a_populated_read_only_cache_is_used_as_it_is(cache, tmp_path, monkeypatch):
    """Shared caches are mounted read-only in containers and clusters: loading only reads, so it works,
    and nothing in the cache is written or touched."""
    import qrhead_integrations.engine.loading as loading

    root, dest = cache
    ro = tmp_path / "ro-cache"
    subprocess.run(["cp", "-a", str(root), str(ro)], check=True)
    (ro / "models" / f"{dest.name}.tmp-left-by-a-killed-run").mkdir()  # a leftover it cannot clean: ignored
    subprocess.run(["chmod", "-R", "a-w", str(ro)], check=True)
    real_access = os.access

    def access(path, mode, *args, **kwargs):  # root writes anywhere: make the mount read-only for it too
        if mode & os.W_OK and str(path).startswith(str(ro)):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(loading.os, "access", access)
    monkeypatch.setenv("QRHEAD_CACHE", str(ro))
    before = sorted((str(p), p.stat().st_mtime_ns) for p in ro.rglob("*"))
    try:
        found = converted_folder(resolve_source(None))
        loading.clear_model_cache()
        loaded = loading.load_model(None, device="cpu")
        assert found == ro / "models" / dest.name and loaded.model.config.num_hidden_layers == 30
        assert sorted((str(p), p.stat().st_mtime_ns) for p in ro.rglob("*")) == before  # nothing written
    finally:
        loading.clear_model_cache()
        subprocess.run(["chmod", "-R", "u+w", str(ro)], check=True)
