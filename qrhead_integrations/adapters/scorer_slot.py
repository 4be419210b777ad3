"""One adapter instance's scorer, built from its settings on first use and rebuilt when they change.

The model comes from the engine's process-wide cache, so every adapter, chunk retriever and scorer
configured for the same model shares one copy of the weights; when a setting changes, the next call builds
a new scorer (cheap: the weights stay cached). A slot can be pinned to an already loaded model
(``from_scorer``), which is then reused, never reloaded.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from ..engine.load_options import LOAD_OPTION_NAMES
from ..engine.options import ScoringOptions
from ..engine.scoring import QRHeadScorer
from .settings import ADAPTER_OPTION_NAMES


@dataclass
class PinnedModel:
    """An already loaded model a scorer was handed over with (``from_scorer``): reused, never reloaded."""

    model: Any
    tokenizer: Any
    name: str


class ScorerSlot:
    """The scorer of one adapter instance, (re)built from its settings when they change. Thread-safe.

    Held in a pydantic ``PrivateAttr``; pickling drops the scorer (it is rebuilt, from the process-wide
    model cache, on first use after unpickling).
    """

    def __init__(self) -> None:
        self.scorer: QRHeadScorer | None = None
        self.key: str | None = None
        self.pinned: PinnedModel | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"scorer": None, "key": None, "pinned": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @staticmethod
    def key_of(settings: dict[str, Any]) -> str:
        return json.dumps(settings, sort_keys=True, default=str)

    def pin(self, scorer: QRHeadScorer, settings: dict[str, Any], *, as_is: bool = True) -> None:
        """Reuse ``scorer``'s model for every later scorer; with ``as_is``, use ``scorer`` itself while the
        settings stay ``settings`` (else the first use builds one with the settings, on the same model)."""
        self.pinned = PinnedModel(scorer.model, scorer.tokenizer, scorer.model_name)
        if as_is:
            self.scorer, self.key = scorer, self.key_of(settings)
        else:
            self.scorer, self.key = None, None

    def get(self, settings: dict[str, Any]) -> QRHeadScorer:
        key = self.key_of(settings)
        with self._lock:
            if self.scorer is not None and self.key == key:
                return self.scorer
            options = ScoringOptions.from_mapping({name: settings[name] for name in ADAPTER_OPTION_NAMES})
            if self.pinned is not None and settings["model"] == self.pinned.name:
                scorer = QRHeadScorer(self.pinned.model, self.pinned.tokenizer, settings["heads"], options=options,
                                      model_name=self.pinned.name)
            else:
                loader = {name: settings[name] for name in LOAD_OPTION_NAMES if name != "model"}
                scorer = QRHeadScorer.from_pretrained(settings["model"], settings["heads"], options=options, **loader)
            self.scorer, self.key = scorer, key
            return scorer
