"""Score with a generator's own weights: a :class:`QRHeadScorer` on the model and tokenizer a framework
LLM object already holds (no copy, no reload).

Framework-free part of :func:`qrhead_integrations.llama_index.llm.scorer_from_llm` and
:func:`qrhead_integrations.langchain.llm.scorer_from_llm`.
"""

from __future__ import annotations

import os
from typing import Any

from .engine.heads import HeadSpec
from .engine.scoring import QRHeadScorer


def model_name_of(model: Any) -> str | None:
    """The name the head-set registry knows a loaded model by.

    ``model.name_or_path`` is a hub id for hub models, but for a folder (e.g. a GGUF file converted by
    :func:`~qrhead_integrations.engine.loading.load_model`) it is a path whose last part is not the
    model's name: the folder's conversion record (or its ``config.json``) names the model then.
    """
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    if not path:
        return None
    path = str(path)
    if os.path.isdir(path):
        from .engine.loading import resolve_source

        try:
            return resolve_source(path).name
        except Exception:  # not a model folder after all: keep the path
            return path
    return path


def scorer_from_parts(model: Any, tokenizer: Any, heads: HeadSpec = None, *, model_name: str | None = None,
                      fallback_name: str | None = None, **options: Any) -> QRHeadScorer:
    """A scorer on ``model`` / ``tokenizer`` as they are (``QRHeadScorer.from_model`` with the model's
    registry name resolved, so ``heads=None`` finds the head set registered for it)."""
    if model is None or tokenizer is None:
        raise ValueError("the LLM holds no loaded model and tokenizer (load it first)")
    if not hasattr(model, "config") or not callable(getattr(model, "forward", None)):
        raise TypeError(f"the LLM's model is a {type(model).__name__}, not a transformers model: QRHead reads the "
                        "attention of a local Hugging Face causal LM")
    name = model_name or model_name_of(model) or fallback_name
    return QRHeadScorer(model, tokenizer, heads, model_name=name, **options)
