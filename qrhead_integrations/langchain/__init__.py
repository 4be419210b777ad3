"""LangChain integration: ``QRHeadReranker`` (document compressor), ``QRHeadRerankRetriever`` (retriever +
re-ranker) and ``QRHeadChunkRetriever`` (chunks of one long document).
Needs ``pip install "qrhead-integrations[langchain]"``."""

try:
    import langchain_core  # noqa: F401
    import langchain_text_splitters  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "qrhead_integrations.langchain needs langchain-core and langchain-text-splitters: "
        'pip install "qrhead-integrations[langchain]"'
    ) from exc

from .base import QRHeadReranker, QRHeadRerankRetriever
from .chunks import QRHeadChunkRetriever, chunk_document, default_text_splitter, select_document_chunks

__all__ = [
    "QRHeadChunkRetriever", "QRHeadRerankRetriever", "QRHeadReranker", "chunk_document",
    "default_text_splitter", "select_document_chunks",
]
