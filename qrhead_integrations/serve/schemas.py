"""Request and response models (pydantic) of the rerank endpoints.

- Cohere rerank (``/v1/rerank``, ``/v2/rerank``): ``{"model", "query", "documents", "top_n",
  "return_documents"}`` -> ``{"id", "results": [{"index", "relevance_score", "document"?}], "meta"}``.
  ``model`` and ``usage`` are added to the response as Jina's and vLLM's rerank APIs have them; the
  Cohere SDK keeps unknown fields, so it parses either way.
- Hugging Face TEI (``/rerank``): ``{"query", "texts", "raw_scores", "return_text", "truncate"}`` ->
  ``[{"index", "score", "text"?}]``.

Fields that hosted services use to steer their own models (``max_tokens_per_doc``, ``priority``,
``truncate``...) are accepted so that existing clients can send them, and documented as ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CohereDocument(BaseModel):
    """A document given as an object: ``text`` is scored (with ``title`` when present); other fields are
    kept and returned with ``return_documents``."""

    model_config = ConfigDict(extra="allow")

    text: str = Field(description="the text that is scored")
    title: str | None = Field(default=None, description="optional title, scored with the text")


class RerankRequest(BaseModel):
    """Cohere's rerank request (v1 and v2)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "model": "qrhead", "query": "Who wrote Hamlet?", "top_n": 2,
        "documents": ["Shakespeare wrote Hamlet around 1600.", "Mount Everest is 8,849 m high.",
                      "Hamlet is a tragedy by William Shakespeare."],
    }]})

    query: str = Field(description="the search query")
    documents: list[str | CohereDocument] = Field(
        description="strings, or objects with 'text' (and optional 'title'); results refer to them by index")
    model: str | None = Field(default=None, description="accepted for compatibility; the server's model is used")
    top_n: int | None = Field(default=None, ge=1, description="return only the best N (default: all)")
    return_documents: bool = Field(default=False, description="include each result's document")
    max_tokens_per_doc: int | None = Field(default=None, description="accepted, ignored (documents are scored "
                                           "whole; see the server's --max-passage-tokens)")
    max_chunks_per_doc: int | None = Field(default=None, description="accepted (v1), ignored")
    rank_fields: list[str] | None = Field(default=None, description="accepted, ignored ('text' is scored)")
    priority: int | None = Field(default=None, description="accepted, ignored (requests are served in order)")


class RerankResultDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str


class RerankResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    relevance_score: float = Field(description="calibrated QRHead score (higher is more relevant; not a "
                                               "probability, may be negative)")
    document: RerankResultDocument | None = Field(default=None, description="with return_documents")


class ApiVersion(BaseModel):
    version: str


class MetaTokens(BaseModel):
    input_tokens: int


class RerankMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    api_version: ApiVersion
    tokens: MetaTokens | None = None
    warnings: list[str] | None = None


class Usage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    """Cohere's rerank response (plus ``model`` and ``usage``, as Jina and vLLM return them)."""

    id: str
    results: list[RerankResult]
    meta: RerankMeta
    model: str
    usage: Usage


class TEIRerankRequest(BaseModel):
    """Text Embeddings Inference's rerank request."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "query": "Who wrote Hamlet?", "texts": ["Shakespeare wrote Hamlet.", "Everest is 8,849 m high."],
        "return_text": True,
    }]})

    query: str
    texts: list[str]
    raw_scores: bool = Field(default=False, description="accepted; QRHead scores are always returned as they "
                                                        "are (they are not logits)")
    return_text: bool = False
    truncate: bool | None = Field(default=None, description="accepted, ignored (documents are scored whole)")
    truncation_direction: str | None = Field(default=None, description="accepted, ignored")


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "qrhead-integrations"
    heads: str = Field(description="the scoring heads, 'layer-head' comma-separated")
    head_set: str = Field(description="the head set's name")


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    """Every error: ``message`` (Cohere's key), ``error`` and ``error_type`` (TEI's keys); limit errors add
    ``limit`` (its name), ``value`` (what the request had) and ``max``."""

    model_config = ConfigDict(extra="allow")

    message: str
    error: str
    error_type: str
    limit: str | None = None
    value: int | None = None
    max: int | None = None
    detail: Any = None
