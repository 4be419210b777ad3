"""``QRHeadRerank``: a LlamaIndex node postprocessor that re-ranks with QRHead scores."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationInfo, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from .._adapter import (
    DEFAULTS,
    DESCRIPTIONS,
    NORMALIZED_FIELDS,
    ScorerSettings,
    ScorerSlot,
    copy_metadata,
    first_stage_scores,
    normalize_field,
)

dispatcher = get_dispatcher(__name__)

HeadsField = str | list[tuple[int, int]] | None


def copy_node(node: BaseNode, metadata: dict[str, Any], hidden_keys: list[str]) -> BaseNode:
    """A copy of ``node`` (same id, text, relationships) with ``metadata`` added; the added keys are
    excluded from the text the LLM and the embedding model see. The copy is deep, so later in-place
    changes (by other postprocessors) cannot reach the original."""
    try:
        new = node.model_copy(deep=True)
    except Exception:
        new = node.model_copy()
        new.metadata = copy_metadata(node.metadata)
        new.relationships = dict(node.relationships)
    new.metadata = {**new.metadata, **metadata}
    new.excluded_llm_metadata_keys = _union(node.excluded_llm_metadata_keys, hidden_keys)
    new.excluded_embed_metadata_keys = _union(node.excluded_embed_metadata_keys, hidden_keys)
    return new


def _union(keys: list[str], more: list[str]) -> list[str]:
    return list(keys) + [k for k in more if k not in keys]


class QRHeadRerank(ScorerSettings, BaseNodePostprocessor):
    """Re-rank retrieved nodes with a language model's query-focused retrieval heads (QRHead).

    All candidates are scored in one forward pass of the scorer model (windows when they exceed its
    context). The nodes arrive in first-stage order, best first: that order places them in the prompt
    (``candidate_order``) and, with ``fusion``, is fused with the QRHead score together with the
    first-stage scores (``node.score``, when every node has one).

    Returns new ``NodeWithScore`` objects holding copies of the nodes; the input is never modified.
    """

    model: str | None = Field(default=None, description=DESCRIPTIONS["model"])
    heads: HeadsField = Field(default=None, description=DESCRIPTIONS["heads"])
    top_n: int | None = Field(default=None, ge=1, description="Nodes to return; None = all, re-ordered.")
    device: str | None = Field(default=None, description=DESCRIPTIONS["device"])
    dtype: str | None = Field(default=None, description=DESCRIPTIONS["dtype"])
    attn_implementation: str | None = Field(default=None, description=DESCRIPTIONS["attn_implementation"])
    candidate_order: Literal["reversed", "as_given", "both"] = Field(
        default=DEFAULTS["candidate_order"], description=DESCRIPTIONS["candidate_order"])
    calibrate: bool = Field(default=DEFAULTS["calibrate"], description=DESCRIPTIONS["calibrate"])
    null_query: str = Field(default=DEFAULTS["null_query"], min_length=1,
                            description=DESCRIPTIONS["null_query"])
    max_context_tokens: int | None = Field(default=None, ge=1, description=DESCRIPTIONS["max_context_tokens"])
    max_passage_tokens: int | None = Field(default=None, ge=1, description=DESCRIPTIONS["max_passage_tokens"])
    max_query_tokens: int = Field(default=DEFAULTS["max_query_tokens"], ge=1,
                                  description=DESCRIPTIONS["max_query_tokens"])
    fusion: Literal["rrf", "linear"] | None = Field(default=None, description=DESCRIPTIONS["fusion"])
    fusion_weight: float = Field(default=DEFAULTS["fusion_weight"], ge=0.0, le=1.0,
                                 description=DESCRIPTIONS["fusion_weight"])
    rrf_k: int = Field(default=DEFAULTS["rrf_k"], ge=1, description=DESCRIPTIONS["rrf_k"])
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Which metadata goes into the text the scorer reads (like the embedding model: 'embed').")
    keep_first_stage_score: bool = Field(
        default=True,
        description="Keep each node's incoming score in its metadata (hidden from LLM and embedding).")
    first_stage_score_key: str = Field(
        default="retrieval_score", min_length=1, description="Metadata key of the kept first-stage score.")

    _slot: ScorerSlot = PrivateAttr(default_factory=ScorerSlot)

    @field_validator(*NORMALIZED_FIELDS, mode="before")
    @classmethod
    def _normalize(cls, value: Any, info: ValidationInfo) -> Any:
        return normalize_field(info.field_name, value)

    @classmethod
    def class_name(cls) -> str:
        return "QRHeadRerank"

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("QRHeadRerank needs the query: pass query_bundle= or query_str=")
        if len(nodes) == 0:
            return []
        scorer = self.scorer
        query = query_bundle.query_str
        top_n = len(nodes) if self.top_n is None else min(self.top_n, len(nodes))
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n,
                                          model_name=scorer.model_name))
        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        first_stage = first_stage_scores([n.score for n in nodes])
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: scorer.model_name,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            ranked = scorer.rank(query, texts, top_k=top_n, first_stage_scores=first_stage)
            out = [self._result(nodes[r.index], r) for r in ranked]
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _result(self, original: NodeWithScore, r: Any) -> NodeWithScore:
        added: dict[str, Any] = {}
        if self.keep_first_stage_score and original.score is not None:
            added[self.first_stage_score_key] = float(original.score)
        if self.fusion is not None:
            added["qrhead_score"] = float(r.qrhead_score)
        if r.truncated:
            added["qrhead_truncated"] = True
        return NodeWithScore(node=copy_node(original.node, added, list(added)), score=float(r.score))

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        # The forward pass runs in a worker thread (context variables, hence instrumentation spans,
        # are carried over), so the event loop keeps serving other tasks meanwhile.
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)
