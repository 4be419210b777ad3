"""The framework-free engine: model loading, prompt and layout, attention capture, scoring, head sets."""

from .aggregate import HeadMasses
from .errors import ContextBudgetError, QRHeadError, QRHeadRuntimeError, QRHeadTypeError, QRHeadValueError
from .heads import HeadSet, HeadSetError, HeadSetNotFoundError, ModelShape, registered_head_sets, resolve_heads
from .load_options import LoadOptions, load_specs
from .loading import ModelLoadError, clear_model_cache, load_model
from .options import ScoringOptions, option_specs
from .packaged import DEFAULT_MODEL, PACKAGED_MODELS, PackagedModelError
from .prompt import DEFAULT_TEMPLATE, Passage, PromptTemplate, SpanError, reference_template
from .ranking import RankedPassage
from .scoring import EncodedPassages, QRHeadScorer

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "PACKAGED_MODELS", "ContextBudgetError", "EncodedPassages", "HeadMasses",
    "HeadSet", "HeadSetError", "HeadSetNotFoundError", "LoadOptions", "ModelLoadError", "ModelShape", "PackagedModelError",
    "Passage", "PromptTemplate", "QRHeadError", "QRHeadRuntimeError", "QRHeadScorer", "QRHeadTypeError",
    "QRHeadValueError", "RankedPassage", "ScoringOptions", "SpanError", "clear_model_cache", "load_model", "load_specs",
    "option_specs", "reference_template", "registered_head_sets", "resolve_heads",
]
