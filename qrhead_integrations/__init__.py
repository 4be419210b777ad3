"""QRHead re-ranking: score passages with a language model's query-focused retrieval heads.

    from qrhead_integrations import QRHeadScorer
    scorer = QRHeadScorer.from_pretrained()          # the embedded default model
    scorer.rank("who wrote Hamlet?", ["...", "..."])
"""

from ._version import __version__
from .engine import (
    DEFAULT_MODEL,
    EncodedPassages,
    HeadMasses,
    HeadSet,
    HeadSetError,
    HeadSetNotFoundError,
    LoadOptions,
    ModelLoadError,
    Passage,
    PromptTemplate,
    QRHeadError,
    QRHeadScorer,
    RankedPassage,
    ScoringOptions,
    clear_model_cache,
)
from .selection_options import SelectionOptions

__all__ = [
    "DEFAULT_MODEL", "EncodedPassages", "HeadMasses", "HeadSet", "HeadSetError", "HeadSetNotFoundError",
    "LoadOptions", "ModelLoadError", "Passage", "PromptTemplate", "QRHeadError", "QRHeadScorer", "RankedPassage",
    "ScoringOptions", "SelectionOptions", "__version__", "clear_model_cache",
]
