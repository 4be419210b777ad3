"""Serve QRHead re-ranking over HTTP in the shapes existing clients already speak.

``qrhead serve`` (extra ``serve``: FastAPI + uvicorn) answers

- ``POST /v1/rerank`` and ``POST /v2/rerank``: Cohere's rerank API (the Cohere SDK, LangChain's and
  LlamaIndex's ``CohereRerank`` pointed at ``base_url``; Jina/vLLM-style clients read the same shape),
- ``POST /rerank``: Hugging Face Text Embeddings Inference (TEI),
- ``GET /health``, ``GET /v1/models`` and FastAPI's OpenAPI docs (``/docs``).

Every request goes through one model worker thread (:class:`RerankWorker`); requests queued over the
same documents share one encoding, and results never depend on what else was queued.
:mod:`qrhead_integrations.serve.ray` scales the same HTTP API out on Ray Serve (one replica per GPU)
and scores large offline sets with Ray Data. See docs/serving.md.

Only :mod:`.config` and :mod:`.worker` are imported eagerly here (no third-party imports); the
FastAPI app is loaded on first use of :func:`create_app`.
"""

from __future__ import annotations

from typing import Any

from .config import Limits, ScorerSettings
from .worker import LimitExceededError, OverloadedError, RerankJob, RerankOutcome, RerankWorker, rank_groups

__all__ = [
    "LimitExceededError", "Limits", "OverloadedError", "RerankJob", "RerankOutcome", "RerankWorker",
    "ScorerSettings", "create_app", "rank_groups",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
