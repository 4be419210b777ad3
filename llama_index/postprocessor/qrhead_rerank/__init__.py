"""LlamaIndex's namespace-package name for the QRHead re-ranker (``llama_index.postprocessor.qrhead_rerank``).

The implementation lives in :mod:`qrhead_integrations.llama_index`.
"""

from qrhead_integrations.llama_index import QRHeadChunkRetriever, QRHeadRerank

__all__ = ["QRHeadChunkRetriever", "QRHeadRerank"]
