"""Score with the generator's own weights: a QRHead scorer from LlamaIndex's ``HuggingFaceLLM``.

    from llama_index.llms.huggingface import HuggingFaceLLM
    from qrhead_integrations.llama_index.llm import scorer_from_llm

    llm = HuggingFaceLLM(model=model, tokenizer=tokenizer, ...)     # the generator, loaded once
    scorer = scorer_from_llm(llm)                                   # same weights: no copy, no reload
    rerank = QRHeadRerank.from_scorer(scorer, top_n=4)              # or QRHeadChunkRetriever(..., reranker=rerank)

Needs ``llama-index-llms-huggingface`` only for the LLM class itself; any object with the loaded model
and tokenizer as ``_model`` / ``_tokenizer`` (HuggingFaceLLM's private attributes) or ``model`` /
``tokenizer`` works.
"""

from __future__ import annotations

from typing import Any

from .._llm import scorer_from_parts
from ..engine.heads import HeadSpec
from ..engine.scoring import QRHeadScorer

#: HuggingFaceLLM's ``model_name`` when the caller passed a model object but no name: not the model's name.
_PLACEHOLDER_NAMES = {"StabilityAI/stablelm-tuned-alpha-3b"}


def model_and_tokenizer(llm: Any) -> tuple[Any, Any]:
    """The loaded transformers model and tokenizer inside a LlamaIndex LLM (``HuggingFaceLLM``)."""
    model = getattr(llm, "_model", None)
    tokenizer = getattr(llm, "_tokenizer", None)
    if model is None or tokenizer is None:
        model = getattr(llm, "model", None) if model is None else model
        tokenizer = getattr(llm, "tokenizer", None) if tokenizer is None else tokenizer
    if model is None or tokenizer is None or isinstance(model, str):
        raise TypeError(
            f"{type(llm).__name__} holds no local transformers model: scorer_from_llm needs LlamaIndex's "
            "HuggingFaceLLM (llama-index-llms-huggingface) or an object with the loaded model and tokenizer; "
            "remote LLMs (APIs, HuggingFaceInferenceAPI) expose no attention")
    return model, tokenizer


def scorer_from_llm(llm: Any, heads: HeadSpec = None, *, model_name: str | None = None,
                    **options: Any) -> QRHeadScorer:
    """A :class:`~qrhead_integrations.QRHeadScorer` on the model and tokenizer ``llm`` already holds.

    - ``llm``: LlamaIndex ``HuggingFaceLLM`` (``llm._model``, ``llm._tokenizer``).
    - ``heads``: as everywhere (default: the set registered for the model, found by its name).
    - ``model_name``: the name for the head-set registry when the model's own ``name_or_path`` does not
      say it (default: from the model; a folder converted by this library records the model's name).
    - ``options``: :class:`~qrhead_integrations.ScoringOptions` fields (``max_context_tokens``, ``fusion``...).

    No weights are copied, moved or changed: the LLM keeps generating as before.
    """
    model, tokenizer = model_and_tokenizer(llm)
    fallback = getattr(llm, "model_name", None)
    if fallback in _PLACEHOLDER_NAMES:
        fallback = None
    return scorer_from_parts(model, tokenizer, heads, model_name=model_name, fallback_name=fallback, **options)


__all__ = ["model_and_tokenizer", "scorer_from_llm"]
