"""Score with the generator's own weights: a QRHead scorer from LangChain's ``HuggingFacePipeline`` or
``ChatHuggingFace``.

    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from qrhead_integrations.langchain.llm import scorer_from_llm

    llm = HuggingFacePipeline(pipeline=transformers.pipeline("text-generation", model=model, tokenizer=tok))
    chat = ChatHuggingFace(llm=llm, tokenizer=tok)
    scorer = scorer_from_llm(chat)                               # or scorer_from_llm(llm): same weights
    reranker = QRHeadReranker.from_scorer(scorer, top_n=4)

Any object with a transformers pipeline (``.pipeline``) or a wrapped LLM that has one (``.llm.pipeline``)
works, as does a transformers ``Pipeline`` itself.
"""

from __future__ import annotations

from typing import Any

from .._llm import scorer_from_parts
from ..engine.heads import HeadSpec
from ..engine.scoring import QRHeadScorer


def model_and_tokenizer(llm: Any) -> tuple[Any, Any]:
    """The loaded transformers model and tokenizer inside a LangChain LLM or chat model."""
    seen = llm
    pipe = getattr(seen, "pipeline", None)
    if pipe is None and getattr(seen, "llm", None) is not None:  # ChatHuggingFace wraps an LLM
        pipe = getattr(seen.llm, "pipeline", None)
    if pipe is None and hasattr(seen, "model") and hasattr(seen, "tokenizer"):  # a transformers Pipeline
        pipe = seen
    model = getattr(pipe, "model", None)
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        tokenizer = getattr(llm, "tokenizer", None)  # ChatHuggingFace keeps its own tokenizer too
    if model is None or tokenizer is None or isinstance(model, str):
        raise TypeError(
            f"{type(llm).__name__} holds no local transformers pipeline: scorer_from_llm needs LangChain's "
            "HuggingFacePipeline, a ChatHuggingFace around one (langchain-huggingface), or a transformers "
            "pipeline; endpoint-backed models (HuggingFaceEndpoint, APIs) expose no attention")
    return model, tokenizer


def scorer_from_llm(llm: Any, heads: HeadSpec = None, *, model_name: str | None = None,
                    **options: Any) -> QRHeadScorer:
    """A :class:`~qrhead_integrations.QRHeadScorer` on the model and tokenizer ``llm`` already holds.

    - ``llm``: ``HuggingFacePipeline`` (``llm.pipeline.model`` / ``.tokenizer``), ``ChatHuggingFace``
      wrapping one, or a transformers text-generation ``Pipeline``.
    - ``heads``: as everywhere (default: the set registered for the model, found by its name).
    - ``model_name``: the name for the head-set registry when the model's own ``name_or_path`` does not
      say it.
    - ``options``: :class:`~qrhead_integrations.ScoringOptions` fields.

    No weights are copied, moved or changed: the LLM keeps generating as before.
    """
    model, tokenizer = model_and_tokenizer(llm)
    fallback = getattr(llm, "model_id", None) or getattr(getattr(llm, "llm", None), "model_id", None)
    return scorer_from_parts(model, tokenizer, heads, model_name=model_name, fallback_name=fallback, **options)


__all__ = ["model_and_tokenizer", "scorer_from_llm"]
