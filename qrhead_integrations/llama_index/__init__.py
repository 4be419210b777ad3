"""LlamaIndex integration: ``QRHeadRerank`` (node postprocessor) and ``QRHeadChunkRetriever``
(chunks of one long document). Needs ``pip install "qrhead-integrations[llama-index]"``."""

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "qrhead_integrations.llama_index needs llama-index-core: "
        'pip install "qrhead-integrations[llama-index]"'
    ) from exc

from .base import QRHeadRerank
from .chunks import QRHeadChunkRetriever, chunk_node, default_splitter, select_document_chunks

__all__ = ["QRHeadChunkRetriever", "QRHeadRerank", "chunk_node", "default_splitter", "select_document_chunks"]
