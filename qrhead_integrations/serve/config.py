"""Server settings without third-party imports: request limits, how to load the scorer, extras."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Environment variable read for the API key when none is passed (``qrhead serve``, :func:`create_app`).
API_KEY_ENV = "QRHEAD_API_KEY"

_EXTRA_MODULES = {
    "serve": ("fastapi", "uvicorn"),
    "ray": ("ray",),
}


def require_extra(extra: str, what: str) -> None:
    """Raise a one-line ``ImportError`` naming the pip command when an extra's packages are missing."""
    missing = [m for m in _EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'qrhead-integrations[{extra}]'"
        )


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; ``None`` switches a limit off.

    - ``max_documents``: documents (texts) in one request.
    - ``max_request_tokens``: tokens of the query plus all documents, counted with the scorer's
      tokenizer (the prompt template's few tokens per document are not counted).
    - ``max_query_tokens``: tokens of the query; ``None`` uses the scorer's ``max_query_tokens``
      (the room reserved for a query when passages are encoded).
    - ``max_body_bytes``: size of the HTTP request body (checked before it is parsed).
    - ``max_queue``: requests waiting for or being served by the model worker; one more gets 503.
    - ``max_group``: requests the worker takes from the queue at once (those over the same documents
      share one encoding).
    """

    max_documents: int | None = 1000
    max_request_tokens: int | None = 32768
    max_query_tokens: int | None = None
    max_body_bytes: int | None = 8 * 1024 * 1024
    max_queue: int = 64
    max_group: int = 64

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_request_tokens", "max_query_tokens", "max_body_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
        for name in ("max_queue", "max_group"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


#: The model-loading settings with a field of their own; the others (``device_map``, ``attn_implementation``...)
#: travel in ``options`` (a test keeps both in step with ``LoadOptions``).
LOAD_FIELDS = ("model", "device", "dtype")


@dataclass(frozen=True)
class ScorerSettings:
    """How to build the scorer where it runs (a server process, a Ray replica or a Ray Data actor).

    Picklable, so it travels to Ray workers, which then load the model themselves. ``options`` go to
    :meth:`QRHeadScorer.from_pretrained`: scoring options (e.g. ``candidate_order``, ``max_passage_tokens``,
    ``max_context_tokens``) and the model-loading settings without a field here (``device_map``,
    ``attn_implementation``, ``revision``, ``trust_remote_code``, ``model_kwargs``: see
    :class:`~qrhead_integrations.engine.load_options.LoadOptions`).
    """

    model: str | None = None
    heads: Any = None
    device: str | None = None
    dtype: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_load(cls, load: Mapping[str, Any], heads: Any = None,
                  options: Mapping[str, Any] | None = None) -> ScorerSettings:
        """Settings from loading values by name (e.g. a command line's); loading settings without a field of
        their own go into ``options`` when they differ from their defaults."""
        from ..engine.load_options import DEFAULT_LOAD

        extra = {k: v for k, v in load.items() if k not in LOAD_FIELDS and v != getattr(DEFAULT_LOAD, k)}
        return cls(heads=heads, options={**dict(options or {}), **extra},
                   **{k: load[k] for k in LOAD_FIELDS if k in load})

    def load_options(self) -> Any:
        """The :class:`~qrhead_integrations.engine.load_options.LoadOptions` these settings describe."""
        from ..engine.load_options import LOAD_OPTION_NAMES, LoadOptions

        own = {k: getattr(self, k) for k in LOAD_FIELDS}
        return LoadOptions(**own, **{k: v for k, v in self.options.items() if k in LOAD_OPTION_NAMES})

    def load(self) -> Any:
        """A ready :class:`~qrhead_integrations.QRHeadScorer` (models are cached process-wide)."""
        from .. import QRHeadScorer

        model = os.fspath(self.model) if self.model is not None else None
        return QRHeadScorer.from_pretrained(model, self.heads, device=self.device, dtype=self.dtype,
                                            **self.options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
