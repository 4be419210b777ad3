"""Load a causal LM and its tokenizer: hub id, local folder, GGUF file or packaged model.

Models are cached process-wide (keyed by source, dtype, device placement and attention
implementation), so several scorers, adapters and framework objects share one copy. GGUF files are
dequantised once into a safetensors folder under the user cache (``$QRHEAD_CACHE``, default
``~/.cache/qrhead-integrations``); later loads read that folder and work with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import QRHeadRuntimeError, QRHeadTypeError, QRHeadValueError
from .packaged import DEFAULT_MODEL, PackagedModel, packaged_model

if TYPE_CHECKING:
    from .load_options import LoadOptions

logger = logging.getLogger("qrhead_integrations")

CONVERSION_MARKER = "qrhead-conversion.json"


class ModelLoadError(QRHeadRuntimeError):
    """A model could not be found or loaded."""


class ModelArgumentError(ModelLoadError, QRHeadTypeError):
    """An argument of the load (e.g. a misspelt ``model_kwargs`` name) was refused by transformers: bad input."""


class ModelNotFoundError(ModelLoadError, QRHeadValueError):
    """The ``model=`` argument names no model (a missing path, a file that is not a model): bad input."""


def cache_root() -> Path:
    """Where converted models (and evaluation caches) live: ``$QRHEAD_CACHE``, else
    ``$XDG_CACHE_HOME/qrhead-integrations``, else ``~/.cache/qrhead-integrations``."""
    root = os.environ.get("QRHEAD_CACHE")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qrhead-integrations"


def writable_dir(path: Path) -> Path:
    """``path`` as an existing, writable folder, or a clear error that says how to choose another one."""
    hint = "set QRHEAD_CACHE to a writable folder"
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ModelLoadError(f"the model cache {p} is a file, not a folder ({hint})")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"cannot create the model cache folder {path}: {exc.strerror} ({hint})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ModelLoadError(f"the model cache folder {path} is not writable ({hint})")
    return path


def _can_write(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


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
    dev = parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise QRHeadValueError(f"device={device!r}, but CUDA is not available on this machine "
                                   "(use device='cpu', or None to pick the best device)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise QRHeadValueError(f"device={device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise QRHeadValueError(f"device={device!r}, but Apple MPS is not available (use 'cpu' or None)")
    return dev


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` (its spelling only: whether it exists is :func:`resolve_device`'s check)."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise QRHeadValueError(f"invalid device {device!r} (use 'cpu', 'cuda', 'cuda:1', 'mps' or None)") from exc


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


_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on a GPU that supports it (else float16), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _FLOAT_DTYPES:
            raise QRHeadValueError(f"unsupported dtype {dtype}: weights must be a floating-point type "
                                   "(float32, bfloat16, float16); for quantised weights pass "
                                   "model_kwargs={'quantization_config': ...}")
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise QRHeadValueError(f"unsupported dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


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
            raise ModelNotFoundError(f"{path} is a file but not a .gguf file; pass a model folder or hub id")
        return ModelSource("gguf", str(path.resolve()), path.stem)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path.resolve()), _folder_name(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", str(ggufs[0].resolve()), ggufs[0].stem)
        raise ModelNotFoundError(
            f"{path} has no config.json" + (f" and {len(ggufs)} .gguf files: pass one of them" if ggufs else "")
        )
    if text.startswith((".", "/", "~")) or text.endswith(".gguf"):
        raise ModelNotFoundError(f"model path not found: {text}")
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


GGUF_MAGIC = b"GGUF"
_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars ("Loading weights", "Converting GGUF tensors") from transformers while we load or
    convert a model: a plain ``qrhead rank`` prints only its result. Restored afterwards."""
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        was = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            if was:
                hf_logging.enable_progress_bar()


def check_gguf(path: Path) -> None:
    """A clear error for files that are not GGUF (empty, random bytes, cut short), before transformers reads them."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise ModelLoadError(f"cannot read the GGUF file {path}: {exc.strerror}") from exc
    if size == 0:
        raise ModelLoadError(f"{path} is empty (0 bytes), not a GGUF model file")
    if head[:4] != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    if len(head) < 24:
        raise ModelLoadError(f"{path} is cut short ({size} bytes): not a complete GGUF model file")


def _convert(gguf_path: Path, dest: Path, info: dict[str, Any]) -> None:
    """Dequantise a GGUF file into a safetensors folder at ``dest`` (atomically: a temporary folder is
    renamed into place), recording each written file's size, mtime and sha256 in the marker."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(gguf_path)
    logger.info("converting %s to safetensors in %s (once)", gguf_path.name, dest)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a shared cache needs the usual permissions
    try:
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            with _quiet_transformers():
                model = AutoModelForCausalLM.from_pretrained(
                    str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
                )
        except (ValueError, OSError, KeyError, RuntimeError, EOFError) as exc:
            raise ModelLoadError(f"could not read the GGUF file {gguf_path}: {exc}") from exc
        # transformers 5 refuses to save a GGUF-loaded model while it is marked quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with _quiet_transformers():
            model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        del model
        info = {**info, "files": _file_records(tmp)}
        (tmp / CONVERSION_MARKER).write_text(json.dumps(info, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_records(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns, "sha256": _sha256_file(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != CONVERSION_MARKER}


def verify_converted(dest: Path, *, full: bool | None = None) -> str | None:
    """None when the converted folder is intact, else what is wrong with it.

    Cheap by default: every recorded file must exist with its recorded size and modification time;
    a file whose size or time changed is hashed and compared with its recorded sha256 (``full=True``,
    or ``QRHEAD_VERIFY=full``, hashes every file).
    """
    if full is None:
        full = os.environ.get("QRHEAD_VERIFY", "").lower() == "full"
    marker = dest / CONVERSION_MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return "its marker file is missing or unreadable"
    files = info.get("files")
    if not isinstance(files, dict) or not files:
        return "it records no file hashes (made by an older version)"
    for name, rec in files.items():
        p = dest / name
        if not p.is_file():
            return f"{name} is missing"
        st = p.stat()
        if st.st_size != rec.get("size"):
            return f"{name} has {st.st_size} bytes, {rec.get('size')} were written"
        if full or st.st_mtime_ns != rec.get("mtime_ns"):
            if _sha256_file(p) != rec.get("sha256"):
                return f"{name} was changed since it was written (sha256 differs)"
    return None


def _clean_leftovers(dest: Path) -> None:
    """Remove what killed conversions of ``dest`` left behind (called with ``dest``'s lock held)."""
    for leftover in dest.parent.glob(dest.name + ".tmp-*"):
        logger.info("removing %s, left by an interrupted conversion", leftover)
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _ensure_converted(dest: Path, build: Any) -> Path:
    """``dest`` intact, (re)building it with ``build()`` under a cross-process lock when it is missing or broken."""
    intact = dest.is_dir() and verify_converted(dest) is None
    if intact and (not any(dest.parent.glob(dest.name + ".tmp-*")) or not _can_write(dest.parent)):
        return dest  # loading reads only: a populated read-only (shared, mounted) cache is fine
    with _locked(dest):
        _clean_leftovers(dest)
        problem = verify_converted(dest) if dest.is_dir() else "missing"
        if problem is None:
            return dest
        if problem != "missing":
            logger.warning("the converted model in %s is broken (%s): rebuilding it", dest, problem)
        build()
    return dest


def _locked(path: Path):
    from filelock import FileLock

    writable_dir(path.parent)
    return FileLock(str(path) + ".lock")


def converted_folder(source: ModelSource) -> Path:
    """The safetensors folder for a GGUF or packaged source, converting it on first use (and again if
    the converted files were damaged)."""
    root = cache_root() / "models"  # made writable (and created) only when something must be written
    if source.packaged is not None:
        pm = source.packaged
        dest = root / f"{pm.name}-{pm.sha256[:12]}"

        def build_packaged() -> None:
            pm.part_paths()  # clear error if not installed
            joined = dest.parent / f"{dest.name}.tmp-join.gguf"
            try:
                sha = pm.write_gguf(joined)
                _convert(joined, dest, {"name": pm.hf_id, "source": pm.name, "sha256": sha,
                                        "requirements": list(pm.requirements)})
            finally:
                joined.unlink(missing_ok=True)

        if not (dest.is_dir() and verify_converted(dest) is None):
            pm.part_paths()
        return _ensure_converted(dest, build_packaged)

    gguf = Path(source.location)
    check_gguf(gguf)
    st = gguf.stat()
    index_path = root / "gguf-index.json"
    key = f"{gguf}|{st.st_size}|{st.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    sha = index.get(key) or _sha256_file(gguf)
    dest = root / f"{gguf.stem}-{sha[:12]}"
    _ensure_converted(dest, lambda: _convert(gguf, dest, {"name": source.name, "source": str(gguf), "sha256": sha}))
    if index.get(key) != sha and _can_write(root):  # a read-only cache hashes the file again next time
        with _locked(index_path):
            try:
                index = json.loads(index_path.read_text())
            except (OSError, ValueError):
                index = {}
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
    """Load (or fetch from the process cache) a causal LM and its fast tokenizer. The settings are those of
    :class:`~.load_options.LoadOptions` (validated there before anything is loaded)."""
    from .load_options import LoadOptions

    opts = LoadOptions(model=model, device=device, device_map=device_map, dtype=dtype,
                       attn_implementation=attn_implementation, revision=revision,
                       trust_remote_code=trust_remote_code, model_kwargs=model_kwargs)
    return load_from_options(opts)


def load_from_options(opts: LoadOptions) -> LoadedModel:
    """:func:`load_model` for (already validated) :class:`~.load_options.LoadOptions`."""
    source = resolve_source(opts.model)
    device_map, dtype, model_kwargs = opts.device_map, opts.dtype, opts.model_kwargs
    attn_implementation, revision, trust_remote_code = opts.attn_implementation, opts.revision, opts.trust_remote_code
    if device_map is not None:
        placement: Any = device_map
        probe = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        torch_dtype = resolve_dtype(dtype, probe)
    else:
        dev = resolve_device(opts.device)
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


def check_attn_implementation(name: str | None) -> None:
    """A clear error for an attention implementation transformers does not know (before any loading)."""
    if name is None:
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    base = name.removeprefix("paged|")
    if base != "eager" and base not in ALL_ATTENTION_FUNCTIONS:
        known = ", ".join(["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()])
        raise QRHeadValueError(f"attn_implementation={name!r} is not an attention implementation transformers "
                               f"knows (known: {known}; None = the model's default)")


def _check_folder(location: str, model_kwargs: dict[str, Any]) -> None:
    """Refuse pickle-only weights unless the caller opted in (``model_kwargs={'use_safetensors': False}``)."""
    folder = Path(location)
    if not folder.is_dir() or model_kwargs.get("use_safetensors") is False:
        return
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
    if pickles:
        raise ModelLoadError(
            f"{folder} holds only pickle weights ({', '.join(pickles[:3])}): loading them can run arbitrary code. "
            "Convert them to safetensors, or opt in with model_kwargs={'use_safetensors': False} if you trust them")


def _load_uncached(source, placement, torch_dtype, attn_implementation, revision,
                   trust_remote_code, model_kwargs) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = source.location
    if source.kind in ("gguf", "packaged"):
        location = str(converted_folder(source))
    elif source.kind == "folder":
        _check_folder(location, model_kwargs)
    kwargs: dict[str, Any] = dict(model_kwargs)
    kwargs.setdefault("use_safetensors", True)
    if kwargs["use_safetensors"] is None:
        del kwargs["use_safetensors"]
    kwargs.update(dtype=torch_dtype, device_map=placement, trust_remote_code=trust_remote_code)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if revision is not None:
        kwargs["revision"] = revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=revision, trust_remote_code=trust_remote_code
        )
        with _quiet_transformers():
            lm = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        hint = ""
        if source.kind == "hub":
            hint = (
                " It is not a local folder, a .gguf file or a packaged model name "
                f"({', '.join(_packaged_names())}); as a hub id it needs network access or a "
                "copy in the Hugging Face cache."
            )
        raise ModelLoadError(f"could not load model {source.location!r}: {exc}.{hint}") from exc
    except TypeError as exc:  # e.g. a misspelt model_kwargs name reaching the model's __init__
        passed = sorted(model_kwargs)
        raise ModelArgumentError(
            f"could not load model {source.location!r}: {exc}"
            + (f" (model_kwargs passed: {', '.join(passed)}; check their names against transformers' "
               "from_pretrained)" if passed else "")) from exc
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


def model_display_name(model: str | os.PathLike[str] | None) -> str:
    """The name a model setting refers to, without loading it (for events and reports)."""
    if model is None:
        model = DEFAULT_MODEL
    text = os.fspath(model)
    pm = packaged_model(text)
    return pm.hf_id if pm is not None and not os.path.exists(text) else text
