"""``QRHeadRerank``: a LlamaIndex node postprocessor that re-ranks with QRHead scores."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from ..adapters.documents import copy_metadata, evidence_metadata, first_stage_scores
from ..adapters.fields import ScorerConfig
from ..engine.loading import model_display_name
from ..engine.prompt import Passage
from ..engine.ranking import RankedPassage

dispatcher = get_dispatcher(__name__)
logger = logging.getLogger("qrhead_integrations")

#: Metadata rendered into the scored text is capped at this many characters (the node's text is what is
#: ranked; a cut is flagged with ``qrhead_truncated`` on the result).
MAX_METADATA_CHARS = 1000


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


def node_passage(node: BaseNode, mode: MetadataMode) -> tuple[Passage, bool]:
    """What the scorer reads for a node: its metadata (as the passage title, capped) and its text.
    Returns the passage and whether the metadata was cut."""
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    meta = node.get_metadata_str(mode) if mode != MetadataMode.NONE else ""
    cut = len(meta) > MAX_METADATA_CHARS
    if cut:
        meta = meta[:MAX_METADATA_CHARS]
    return Passage(text, meta.replace("\n", "; ")), cut


class QRHeadRerank(ScorerConfig, BaseNodePostprocessor):
    """Re-rank retrieved nodes with a language model's query-focused retrieval heads (QRHead).

    All candidates are scored in one forward pass of the scorer model (windows when they exceed its
    context). The QRHead score is fused (``fusion``) with the first-stage scores (``node.score``) when
    every node has one; otherwise with what ``first_stage`` computes (the default: BM25 over these
    nodes). The input order is read as a ranking only with ``first_stage="order"``; it decides where
    nodes sit in the prompt (``candidate_order``).

    Returns new ``NodeWithScore`` objects holding copies of the nodes; the input is never modified.
    Every scoring option of the engine is a field here (see :class:`~qrhead_integrations.ScoringOptions`).
    """

    top_n: int | None = Field(default=3, ge=1, strict=True,
                              description="Nodes to return (best first); None = all, re-ordered.")
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Which metadata the scorer reads with each node's text (like the embedding model: 'embed').")
    keep_first_stage_score: bool = Field(
        default=True,
        description="Keep each node's incoming score in its metadata (hidden from LLM and embedding).")
    first_stage_score_key: str = Field(
        default="retrieval_score", min_length=1, description="Metadata key of the kept first-stage score.")
    evidence: int = Field(
        default=0, ge=0, strict=True,
        description="Put the N sentences of each node that hold most of the heads' attention into "
                    "metadata['qrhead_evidence'] (character offsets into the node text; hidden from LLM and "
                    "embedding); 0 = off.")

    @classmethod
    def class_name(cls) -> str:
        return "QRHeadRerank"

    @classmethod
    def from_llm(cls, llm: Any, heads: Any = None, *, model_name: str | None = None, **kwargs: Any) -> QRHeadRerank:
        """Score with the generator's own loaded weights: ``llm`` is LlamaIndex's ``HuggingFaceLLM`` (or any
        object holding a transformers model and tokenizer). No copy, no reload; the LLM generates as before.
        ``heads`` default to the set registered for the model; ``kwargs`` are this class's fields
        (``top_n``, scoring options...)."""
        from .llm import scorer_from_llm

        return cls.from_scorer(scorer_from_llm(llm, heads, model_name=model_name), **kwargs)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("QRHeadRerank needs the query: pass query_bundle= or query_str=")
        if len(nodes) == 0:
            return []
        query = query_bundle.query_str
        top_n = len(nodes) if self.top_n is None else min(self.top_n, len(nodes))
        # The start event comes before the scorer is built, so it covers loading the model.
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n,
                                          model_name=model_display_name(self.model)))
        scorer = self.scorer
        read = [node_passage(n.node, self.metadata_mode) for n in nodes]
        empty = [n.node.node_id for n, (p, _) in zip(nodes, read) if not p.text.strip()]
        if empty:
            logger.warning("QRHeadRerank: %d node(s) have no text to score (e.g. image nodes: %s); they are scored "
                           "as empty passages and rank low", len(empty), ", ".join(empty[:5]))
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
            ranked = scorer.rank(query, [p for p, _ in read], top_k=top_n, first_stage_scores=first_stage,
                                 evidence=self.evidence)
            out = [self._result(nodes[r.index], r, read[r.index][1]) for r in ranked]
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _result(self, original: NodeWithScore, r: RankedPassage, metadata_cut: bool) -> NodeWithScore:
        added: dict[str, Any] = {}
        if self.keep_first_stage_score and original.score is not None:
            added[self.first_stage_score_key] = float(original.score)
        if r.fused:
            added["qrhead_score"] = float(r.qrhead_score)
        if r.truncated or metadata_cut:
            added["qrhead_truncated"] = True
        if self.evidence:
            added["qrhead_evidence"] = evidence_metadata(r)
        return NodeWithScore(node=copy_node(original.node, added, list(added)), score=float(r.score))

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        # The forward pass runs in a worker thread (context variables, hence instrumentation spans,
        # are carried over), so the event loop keeps serving other tasks meanwhile.
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)
