"""The adapters' settings as pydantic fields.

:data:`ScorerConfig` is a pydantic model whose fields are the model-loading settings plus every
:class:`~qrhead_integrations.engine.options.ScoringOptions` field, generated from the options
themselves (type, default, accepted values, description): an option added to the engine appears in both
frameworks' classes, with the same validation. The LlamaIndex and LangChain classes inherit from it next
to their framework base class. Its scorer is built from the fields on first use (see
:class:`~.scorer_slot.ScorerSlot`).

:func:`selection_fields` does the same for the chunk retrievers'
:class:`~qrhead_integrations.selection_options.SelectionOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    create_model,
    field_validator,
)
from typing_extensions import Self

from ..engine.options import ScoringOptions, TemplateName, option_specs
from ..engine.scoring import QRHeadScorer
from ..selection_options import selection_specs
from .scorer_slot import ScorerSlot
from .settings import (
    ADAPTER_OPTION_NAMES,
    LOADER_FIELDS,
    NORMALIZED_FIELDS,
    SCORER_FIELDS,
    normalize_field,
    settings_of_scorer,
)


def _option_field(spec: Any) -> tuple[Any, Any]:
    annotation = spec.annotation
    if spec.name == "template":
        annotation = TemplateName  # names only (the engine also takes PromptTemplate objects)
    extra: dict[str, Any] = {}
    if spec.minimum is not None:
        extra["ge"] = spec.minimum
    if spec.maximum is not None:
        extra["le"] = spec.maximum
    if spec.kind is bool:
        annotation = bool  # strict: "no" or 1 are not booleans (pydantic's lax mode would accept them)
        extra["strict"] = True
    if spec.kind is int and not spec.nullable:
        extra["strict"] = True
    return annotation, Field(default=spec.default, description=spec.description, **extra)


def selection_fields(rename: Mapping[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """Every :class:`~qrhead_integrations.selection_options.SelectionOptions` setting as a pydantic field
    definition (for ``create_model``), validated as the options are: strict integers and booleans, the
    minimum as ``ge``, live objects (``count_tokens``) left out of serialisation. ``rename`` gives a setting
    a framework's own name; the setting's name stays accepted as an alias (LangChain's ``k`` / ``top_k``)."""
    fields = {}
    for spec in selection_specs():
        name = (rename or {}).get(spec.name, spec.name)
        extra: dict[str, Any] = {"strict": True} if spec.kind in (bool, int) else {}
        if spec.minimum is not None:
            extra["ge"] = spec.minimum
        if not spec.serialised:
            extra["exclude"] = True
        if name != spec.name:
            extra["validation_alias"] = AliasChoices(name, spec.name)
        fields[name] = (spec.annotation, Field(default=spec.default, description=spec.description, **extra))
    return fields


class _ScorerConfigBase(BaseModel):
    """Loading settings; the option fields are added by :data:`ScorerConfig`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    _slot: ScorerSlot = PrivateAttr(default_factory=ScorerSlot)

    @field_validator(*NORMALIZED_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _normalize(cls, value: Any, info: ValidationInfo) -> Any:
        return normalize_field(info.field_name, value)

    @field_validator("max_context_tokens", "max_passage_tokens", "rrf_k", mode="before", check_fields=False)
    @classmethod
    def _no_bools(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be an integer, not {value!r}")
        return value

    @field_validator("null_query", mode="after", check_fields=False)
    @classmethod
    def _null_query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("null_query must not be empty (the default is 'N/A')")
        return value

    def scorer_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCORER_FIELDS}

    def scoring_options(self) -> ScoringOptions:
        """The engine options these fields describe."""
        return ScoringOptions.from_mapping({name: getattr(self, name) for name in ADAPTER_OPTION_NAMES})

    @property
    def scorer(self) -> QRHeadScorer:
        """The engine scorer for the current settings (loaded on first use, model shared process-wide)."""
        return self._slot.get(self.scorer_settings())

    def load(self) -> Self:
        """Load the scorer model now instead of on the first query; returns ``self``."""
        _ = self.scorer
        return self

    @classmethod
    def from_scorer(cls, scorer: QRHeadScorer, **kwargs: Any) -> Self:
        """Wrap an existing scorer (e.g. one built with ``QRHeadScorer.from_model`` on the generator's
        weights). Its settings become this object's fields; its model is reused, never reloaded."""
        own = settings_of_scorer(scorer)
        fields = {**own, **kwargs}
        self = cls(**fields)
        # settings given here that differ from the scorer's (e.g. fusion=None) give a new scorer on its model
        same = all(fields[name] == own[name] for name in kwargs if name in own)
        self._slot.pin(scorer, self.scorer_settings(), as_is=same)
        return self


ScorerConfig: type[_ScorerConfigBase] = create_model(  # type: ignore[call-overload]
    "ScorerConfig",
    __base__=_ScorerConfigBase,
    __doc__="Scorer settings as pydantic fields: model loading plus every scoring option.",
    **{name: (annotation, Field(default=default, description=desc))
       for name, (annotation, default, desc) in LOADER_FIELDS.items()},
    **{spec.name: _option_field(spec) for spec in option_specs() if spec.name in ADAPTER_OPTION_NAMES},
)
