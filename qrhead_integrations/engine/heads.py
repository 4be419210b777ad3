"""Head sets: which attention heads score passages, where they come from, and validation.

A head is ``(layer, head)``, both 0-based, written ``"layer-head"`` in strings (``"13-18"``),
the convention of the published QRHead lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import QRHeadValueError

HEADSET_FORMAT = "qrhead-heads/1"

Head = tuple[int, int]


class HeadSetError(QRHeadValueError):
    """A head specification is malformed or does not fit the model."""


class HeadSetNotFoundError(HeadSetError, LookupError):
    """No head set is registered for a model."""


@dataclass(frozen=True)
class ModelShape:
    """The part of a model's config that a head set must agree with."""

    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        text = getattr(config, "get_text_config", lambda: config)()
        layers = getattr(text, "num_hidden_layers", None)
        heads = getattr(text, "num_attention_heads", None)
        if layers is None or heads is None:
            raise HeadSetError(
                f"cannot read num_hidden_layers/num_attention_heads from {type(config).__name__}"
            )
        return cls(int(layers), int(heads), getattr(text, "num_key_value_heads", None))

    def describe(self) -> str:
        return f"{self.num_layers} layers x {self.num_heads} heads"


@dataclass(frozen=True)
class HeadSet:
    """An ordered set of attention heads, best first, with where it came from.

    ``scores`` (optional) holds each selected head's detection score, ``detection_scores`` the full
    layers x heads score matrix of a detection run, ``weights`` (optional) non-negative weights of the
    selected heads fitted on the detection examples (None: every head counts the same), ``info``
    free-form provenance (data, size, method, scoring variant).
    """

    heads: tuple[Head, ...]
    name: str = "custom"
    model: str | None = None
    shape: ModelShape | None = None
    scores: tuple[float, ...] | None = None
    detection_scores: tuple[tuple[float, ...], ...] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        heads = tuple((int(layer), int(head)) for layer, head in self.heads)
        if not heads:
            raise HeadSetError("a head set needs at least one head")
        if len(set(heads)) != len(heads):
            dupes = sorted({h for h in heads if heads.count(h) > 1})
            raise HeadSetError(f"duplicate heads in head set: {format_heads(dupes)}")
        for layer, head in heads:
            if layer < 0 or head < 0:
                raise HeadSetError(f"negative layer or head index: {layer}-{head}")
        object.__setattr__(self, "heads", heads)
        if self.scores is not None and len(self.scores) != len(heads):
            raise HeadSetError("scores must have one value per head")
        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            if len(weights) != len(heads):
                raise HeadSetError("weights must have one value per head")
            if any(not w >= 0 for w in weights) or not sum(weights) > 0:
                raise HeadSetError("head weights must be non-negative numbers with a positive sum")
            object.__setattr__(self, "weights", weights)
        if self.shape is not None:
            self.validate(self.shape)

    # --- container protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.heads)

    def __iter__(self) -> Iterator[Head]:
        return iter(self.heads)

    def __contains__(self, item: object) -> bool:
        return item in self.heads

    def __str__(self) -> str:
        return format_heads(self.heads)

    # --- views ----------------------------------------------------------------------------------
    @property
    def layers(self) -> dict[int, tuple[int, ...]]:
        """Selected heads grouped by layer (layers ascending, heads in set order)."""
        out: dict[int, list[int]] = {}
        for layer, head in self.heads:
            out.setdefault(layer, []).append(head)
        return {layer: tuple(out[layer]) for layer in sorted(out)}

    @property
    def deepest_layer(self) -> int:
        return max(layer for layer, _ in self.heads)

    def top(self, k: int) -> HeadSet:
        """The first ``k`` heads (a set is ordered best first)."""
        if k < 1:
            raise HeadSetError("k must be >= 1")
        return HeadSet(
            self.heads[:k],
            name=self.name,
            model=self.model,
            shape=self.shape,
            scores=self.scores[:k] if self.scores else None,
            detection_scores=self.detection_scores,
            info=self.info,
            weights=self.weights[:k] if self.weights else None,
        )

    # --- validation -----------------------------------------------------------------------------
    def validate(self, shape: ModelShape) -> HeadSet:
        """Raise :class:`HeadSetError` unless every head exists in a model of ``shape``."""
        if self.shape is not None and (self.shape.num_layers, self.shape.num_heads) != (
            shape.num_layers,
            shape.num_heads,
        ):
            raise HeadSetError(
                f"head set {self.name!r} was made for a model with {self.shape.describe()}"
                f"{f' ({self.model})' if self.model else ''}, but this model has {shape.describe()}"
            )
        bad = [(l, h) for l, h in self.heads if l >= shape.num_layers or h >= shape.num_heads]
        if bad:
            raise HeadSetError(
                f"heads {format_heads(bad)} do not exist in a model with {shape.describe()} "
                f"(valid: layer 0-{shape.num_layers - 1}, head 0-{shape.num_heads - 1})"
            )
        return self

    # --- constructors ---------------------------------------------------------------------------
    @classmethod
    def all_heads(cls, shape: ModelShape) -> HeadSet:
        """Every head of every layer: the in-context re-ranking (ICR) baseline."""
        heads = tuple((l, h) for l in range(shape.num_layers) for h in range(shape.num_heads))
        return cls(heads, name="all", shape=shape)

    @classmethod
    def random_heads(
        cls, shape: ModelShape, k: int, seed: int = 0, exclude: Iterable[Head] = ()
    ) -> HeadSet:
        """``k`` heads drawn uniformly without replacement, reproducible from ``seed``."""
        excluded = set(map(tuple, exclude))
        pool = [
            (l, h)
            for l in range(shape.num_layers)
            for h in range(shape.num_heads)
            if (l, h) not in excluded
        ]
        if not 1 <= k <= len(pool):
            raise HeadSetError(f"cannot draw {k} random heads from {len(pool)} available")
        heads = tuple(random.Random(seed).sample(pool, k))
        return cls(heads, name=f"random:{k}:{seed}", shape=shape)

    @classmethod
    def from_string(cls, spec: str, name: str = "custom") -> HeadSet:
        """Parse ``"13-18,13-21"`` (also space or semicolon separated, or ``"13:18"``)."""
        return cls(parse_head_list(spec), name=name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadSet:
        fmt = data.get("format", HEADSET_FORMAT)
        if fmt != HEADSET_FORMAT:
            raise HeadSetError(f"unsupported head set format {fmt!r} (expected {HEADSET_FORMAT!r})")
        if "heads" not in data:
            raise HeadSetError("head set JSON has no 'heads' field")
        raw = data["heads"]
        heads = parse_head_list(raw) if isinstance(raw, str) else [_as_head(h) for h in raw]
        shape = None
        if data.get("num_layers") is not None and data.get("num_heads") is not None:
            shape = ModelShape(
                int(data["num_layers"]), int(data["num_heads"]), data.get("num_kv_heads")
            )
        head_scores = data.get("detection_scores", data.get("head_scores"))
        return cls(
            tuple(heads),
            name=str(data.get("name", "custom")),
            model=data.get("model"),
            shape=shape,
            scores=tuple(float(s) for s in data["scores"]) if data.get("scores") else None,
            detection_scores=tuple(tuple(float(v) for v in row) for row in head_scores)
            if head_scores
            else None,
            info=dict(data.get("info", {})),
            weights=tuple(float(w) for w in data["weights"]) if data.get("weights") else None,
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> HeadSet:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HeadSetError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, list):  # a bare list of heads
            data = {"heads": data, "name": Path(path).stem}
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": HEADSET_FORMAT,
            "name": self.name,
            "model": self.model,
            "heads": [list(h) for h in self.heads],
        }
        if self.shape is not None:
            out.update(
                num_layers=self.shape.num_layers,
                num_heads=self.shape.num_heads,
                num_kv_heads=self.shape.num_kv_heads,
            )
        if self.scores is not None:
            out["scores"] = list(self.scores)
        if self.weights is not None:
            out["weights"] = list(self.weights)
        if self.detection_scores is not None:
            out["detection_scores"] = [list(r) for r in self.detection_scores]
        if self.info:
            out["info"] = dict(self.info)
        return out

    def to_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")


HeadSpec = None | str | HeadSet | Sequence[Head] | Sequence[str] | os.PathLike

_HEAD_RE = re.compile(r"^\s*(\d+)\s*[-:]\s*(\d+)\s*$")


def _as_head(item: Any) -> Head:
    if isinstance(item, str):
        m = _HEAD_RE.match(item)
        if not m:
            raise HeadSetError(f"cannot parse head {item!r}: expected 'layer-head', e.g. '13-18'")
        return int(m.group(1)), int(m.group(2))
    try:
        layer, head = item
        if isinstance(layer, bool) or isinstance(head, bool):
            raise TypeError
        if int(layer) != layer or int(head) != head:
            raise TypeError
        return int(layer), int(head)
    except (TypeError, ValueError):
        raise HeadSetError(f"cannot parse head {item!r}: expected (layer, head)") from None


def parse_head_list(spec: str | Iterable[Any]) -> list[Head]:
    """Parse ``"13-18,13-21"`` or an iterable of ``(layer, head)`` / ``"layer-head"`` items."""
    if isinstance(spec, str):
        items = [p for p in re.split(r"[,;\s]+", spec.strip()) if p]
        if not items:
            raise HeadSetError("empty head list")
        return [_as_head(p) for p in items]
    return [_as_head(p) for p in spec]


def format_heads(heads: Iterable[Head]) -> str:
    return ",".join(f"{l}-{h}" for l, h in heads)


# --- registry of shipped head sets ---------------------------------------------------------------


def config_fingerprint(config: Any) -> str:
    """Short hash of the config fields that decide a model's attention layout."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    keys = ("model_type", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "hidden_size", "head_dim", "vocab_size", "intermediate_size")
    data = {k: getattr(text, k, None) for k in keys}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def normalize_model_name(name: str) -> str:
    """Canonical key for matching a model id, folder or GGUF file name against the registry."""
    base = str(name).rstrip("/\\").replace("\\", "/").split("/")[-1].lower()
    base = re.sub(r"\.gguf$", "", base)
    base = re.sub(r"[._-](q\d\w*|f16|f32|bf16|fp16|gguf)$", "", base)  # quantisation suffixes
    return base


@dataclass(frozen=True)
class RegistryEntry:
    key: str
    variant: str
    names: tuple[str, ...]
    path: Path

    def load(self) -> HeadSet:
        return HeadSet.from_json(self.path)


def _registry_entries() -> list[RegistryEntry]:
    entries = []
    folder = resources.files("qrhead_integrations") / "head_sets"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".json"):
            continue
        data = json.loads(item.read_text(encoding="utf-8"))
        names = tuple(normalize_model_name(n) for n in [data["model"], *data.get("aliases", [])])
        entries.append(
            RegistryEntry(
                key=item.name[:-5],
                variant=data.get("variant", "qrhead"),
                names=names,
                path=Path(str(item)),
            )
        )
    return entries


def registered_head_sets(model_name: str | None = None) -> list[RegistryEntry]:
    """Shipped head sets, optionally only those registered for ``model_name``."""
    entries = _registry_entries()
    if model_name is None:
        return entries
    key = normalize_model_name(model_name)
    return [e for e in entries if key in e.names]


def lookup_registered(model_name: str | None, shape: ModelShape, variant: str = "qrhead") -> HeadSet:
    """The shipped head set of ``variant`` for a model, checked against its shape."""
    candidates = [e for e in registered_head_sets(model_name) if e.variant == variant] if model_name else []
    for entry in candidates:
        hs = entry.load()
        if hs.shape is None or (hs.shape.num_layers, hs.shape.num_heads) == (
            shape.num_layers,
            shape.num_heads,
        ):
            return hs
    known = sorted({f"{e.names[0]} ({e.variant})" for e in _registry_entries()})
    raise HeadSetNotFoundError(
        f"no {variant!r} head set is registered for model {model_name!r} ({shape.describe()}). "
        "Detect one with `qrhead detect --model ... --data ... --out heads.json` and pass "
        "heads='heads.json', or pass heads='all' (every head, the ICR baseline). "
        f"Registered: {', '.join(known)}"
    )


HEADS_FORMS = ("Accepted heads: None (the set registered for the model), 'all', 'random:K[:SEED]', a registered "
               "variant name (e.g. 'qrhead', 'retrieval'), 'layer-head' pairs such as '13-18,13-21' (0-based), "
               "a head-set JSON file, or a list of (layer, head)")


def resolve_heads(spec: HeadSpec, shape: ModelShape, model_name: str | None = None) -> HeadSet:
    """Turn any accepted ``heads=`` value into a validated :class:`HeadSet` for a model.

    Accepted: ``None`` (the registered set for the model), a :class:`HeadSet`, ``"all"``,
    ``"random:K[:SEED]"``, the name of a registered variant (``"qrhead"``, ``"retrieval"``...),
    a path to a JSON file, a string ``"13-18,13-21"``, or a list of ``(layer, head)``.
    """
    if spec is None:
        return lookup_registered(model_name, shape)
    if isinstance(spec, HeadSet):
        return spec.validate(shape)
    if isinstance(spec, os.PathLike):
        return HeadSet.from_json(spec).validate(shape)
    if isinstance(spec, str):
        s = spec.strip()
        low = s.lower()
        if low == "all":
            return HeadSet.all_heads(shape)
        if low.startswith("random"):
            m = re.fullmatch(r"random(?::(\d+))?(?::(\d+))?", low)
            if not m:
                raise HeadSetError(f"cannot parse {spec!r}: expected 'random:K' or 'random:K:SEED'")
            k = int(m.group(1) or 16)
            seed = int(m.group(2) or 0)
            return HeadSet.random_heads(shape, k, seed)
        looks_like_path = s.endswith(".json") or "/" in s or "\\" in s or s.startswith((".", "~"))
        if looks_like_path:
            path = os.path.expanduser(s)
            if not os.path.isfile(path):
                raise HeadSetError(f"head set file not found: {s}. {HEADS_FORMS}")
            return HeadSet.from_json(path).validate(shape)
        if re.fullmatch(r"[a-z][a-z0-9_.+-]*", low) and not _HEAD_RE.match(s):
            return lookup_registered(model_name, shape, variant=low)
        try:
            return HeadSet.from_string(s).validate(shape)
        except HeadSetError as exc:
            if "cannot parse head" in str(exc):
                raise HeadSetError(f"{exc}. {HEADS_FORMS}") from None
            raise
    if isinstance(spec, Iterable):
        return HeadSet(tuple(parse_head_list(spec))).validate(shape)
    raise HeadSetError(f"unsupported heads specification of type {type(spec).__name__}. {HEADS_FORMS}")
