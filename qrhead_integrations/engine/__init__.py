"""The framework-free engine: model loading, prompt and spans, attention capture, scoring, head sets."""

from .heads import HeadSet, HeadSetError, HeadSetNotFoundError, ModelShape, registered_head_sets, resolve_heads
from .loading import ModelLoadError, clear_model_cache, load_model
from .packaged import DEFAULT_MODEL, PACKAGED_MODELS, PackagedModelError
from .prompt import DEFAULT_TEMPLATE, Passage, PromptTemplate
from .scoring import EncodedPassages, HeadScores, QRHeadScorer, RankedPassage

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "PACKAGED_MODELS", "EncodedPassages", "HeadScores", "HeadSet",
    "HeadSetError", "HeadSetNotFoundError", "ModelLoadError", "ModelShape", "PackagedModelError", "Passage",
    "PromptTemplate", "QRHeadScorer", "RankedPassage", "clear_model_cache", "load_model",
    "registered_head_sets", "resolve_heads",
]
