"""Load a causal LM and its tokenizer: hub id, local folder, GGUF file or packaged model.

Models are cached process-wide (keyed by source, dtype, device placement and attention
implementation), so several scorers, adapters and framework objects share one copy. GGUF files are
dequantised once into a safetensors folder under the user cache (``$QRHEAD_CACHE``, default
``~/.cache/qrhead-integrations``); later loads read that folder and work with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import QRHeadRuntimeError
from .packaged import DEFAULT_MODEL, PackagedModel, packaged_model

logger = logging.getLogger("qrhead_integrations")

CONVERSION_MARKER = "qrhead-conversion.json"


class ModelLoadError(QRHeadRuntimeError):
    """A model could not be found or loaded."""


def cache_root() -> Path:
    root = os.environ.get("QRHEAD_CACHE")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qrhead-integrations"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA (under torchrun / accelerate launch: the process's own GPU,
    ``cuda:<local rank>``), then Apple MPS, then CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            from .parallel import local_device

            return torch.device(local_device() or "cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}") from exc


def input_device(model: torch.nn.Module) -> torch.device:
    """The device a model's input ids must be on.

    Usually the input embedding's device. With an accelerate device map that offloads the embedding
    (to ``"cpu"`` or ``"disk"``), its weight sits on the meta device between forwards and the
    device the forward runs on is the hook's execution device.
    """
    emb = model.get_input_embeddings()
    hook = getattr(emb, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        dev = getattr(h, "execution_device", None)
        if dev is not None and str(dev) != "meta":
            return torch.device("cuda", dev) if isinstance(dev, int) else torch.device(dev)
    weight = getattr(emb, "weight", None)
    if weight is not None and weight.device.type != "meta":
        return weight.device
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on a GPU that supports it (else float16), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, resolved from the user's ``model=`` argument."""

    kind: str  # "packaged", "gguf", "folder" or "hub"
    location: str  # folder, file or hub id to load from
    name: str  # the model's name for head-set lookup and reports
    packaged: PackagedModel | None = None


def resolve_source(model: str | os.PathLike[str] | None) -> ModelSource:
    if model is None:
        model = DEFAULT_MODEL
    text = os.fspath(model)
    pm = packaged_model(text)
    if pm is not None and not os.path.exists(text):
        return ModelSource("packaged", pm.name, pm.hf_id, pm)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf file; pass a model folder or hub id")
        return ModelSource("gguf", str(path.resolve()), path.stem)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path.resolve()), _folder_name(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", str(ggufs[0].resolve()), ggufs[0].stem)
        raise ModelLoadError(
            f"{path} has no config.json" + (f" and {len(ggufs)} .gguf files: pass one of them" if ggufs else "")
        )
    if text.startswith((".", "/", "~")) or text.endswith(".gguf"):
        raise ModelLoadError(f"model path not found: {text}")
    return ModelSource("hub", text, text)


def _folder_name(path: Path) -> str:
    marker = path / CONVERSION_MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text())["name"]
        except (KeyError, ValueError):
            pass
    try:
        cfg = json.loads((path / "config.json").read_text())
        name = cfg.get("_name_or_path") or cfg.get("name_or_path")
        if name and not os.path.isabs(name):
            return name
    except ValueError:
        pass
    return path.name


# --- GGUF conversion ---------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(gguf_path: Path, dest: Path, info: dict[str, Any]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors in %s (once)", gguf_path.name, dest)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # transformers 5 refuses to save a GGUF-loaded model while it is marked quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        del model
        (tmp / CONVERSION_MARKER).write_text(json.dumps(info, indent=1))
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _locked(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def converted_folder(source: ModelSource) -> Path:
    """The safetensors folder for a GGUF or packaged source, converting it on first use."""
    root = cache_root() / "models"
    if source.packaged is not None:
        pm = source.packaged
        dest = root / f"{pm.name}-{pm.sha256[:12]}"
        if (dest / CONVERSION_MARKER).is_file():
            return dest
        pm.part_paths()  # clear error if not installed
        with _locked(dest):
            if (dest / CONVERSION_MARKER).is_file():
                return dest
            joined = dest.parent / f"{pm.name}.gguf.partial"
            try:
                sha = pm.write_gguf(joined)
                gguf = joined.with_suffix("")  # ".gguf"
                os.replace(joined, gguf)
                _convert(gguf, dest, {"name": pm.hf_id, "source": pm.name, "sha256": sha,
                                      "requirements": list(pm.requirements)})
            finally:
                joined.unlink(missing_ok=True)
                joined.with_suffix("").unlink(missing_ok=True)
        return dest

    gguf = Path(source.location)
    st = gguf.stat()
    index_path = root / "gguf-index.json"
    key = f"{gguf}|{st.st_size}|{st.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    sha = index.get(key) or _sha256_file(gguf)
    dest = root / f"{gguf.stem}-{sha[:12]}"
    with _locked(dest):
        if not (dest / CONVERSION_MARKER).is_file():
            _convert(gguf, dest, {"name": source.name, "source": str(gguf), "sha256": sha})
        if index.get(key) != sha:
            index[key] = sha
            index_path.write_text(json.dumps(index, indent=1))
    return dest


# --- process-wide model cache ----------------------------------------------------------------


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    source: ModelSource


_CACHE: dict[tuple, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple, threading.Lock] = {}


def clear_model_cache() -> None:
    """Forget every cached model (they are freed once no scorer holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_model(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device | None = None,
    device_map: str | dict[str, Any] | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load (or fetch from the process cache) a causal LM and its fast tokenizer."""
    source = resolve_source(model)
    if device_map is not None and device is not None:
        raise ValueError("pass either device or device_map, not both")
    if device_map is not None:
        placement: Any = device_map
        probe = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        torch_dtype = resolve_dtype(dtype, probe)
    else:
        dev = resolve_device(device)
        placement = str(dev)
        torch_dtype = resolve_dtype(dtype, dev)
    key = (
        source.kind, source.location, str(torch_dtype),
        json.dumps(placement, sort_keys=True, default=str), attn_implementation, revision,
        trust_remote_code, json.dumps(model_kwargs or {}, sort_keys=True, default=str),
    )
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit
        loaded = _load_uncached(source, placement, torch_dtype, attn_implementation, revision,
                                trust_remote_code, model_kwargs or {})
        with _CACHE_LOCK:
            _CACHE[key] = loaded
        return loaded


def _load_uncached(source, placement, torch_dtype, attn_implementation, revision,
                   trust_remote_code, model_kwargs) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = source.location
    if source.kind in ("gguf", "packaged"):
        location = str(converted_folder(source))
    kwargs: dict[str, Any] = dict(model_kwargs)
    kwargs.update(dtype=torch_dtype, device_map=placement, trust_remote_code=trust_remote_code)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if revision is not None:
        kwargs["revision"] = revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=revision, trust_remote_code=trust_remote_code
        )
        lm = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        hint = ""
        if source.kind == "hub":
            hint = (
                " It is not a local folder, a .gguf file or a packaged model name "
                f"({', '.join(_packaged_names())}); as a hub id it needs network access or a "
                "copy in the Hugging Face cache."
            )
        raise ModelLoadError(f"could not load model {source.location!r}: {exc}.{hint}") from exc
    lm.eval()
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"{source.location}: a fast tokenizer is required (exact passage spans need offsets)"
        )
    logger.info("loaded %s (%s, %s)", source.name, torch_dtype, placement)
    return LoadedModel(lm, tokenizer, source.name, source)


def _packaged_names() -> list[str]:
    from .packaged import PACKAGED_MODELS

    return sorted(PACKAGED_MODELS)
