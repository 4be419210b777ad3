"""LangChain's own standard retriever tests (langchain-tests) for both retrievers.

``RetrieversIntegrationTests`` checks LangChain's number-of-results convention (``k`` at construction and
per call), that ``invoke`` / ``ainvoke`` return Documents, and that no standard test is overridden. The
scorer is a tiny random-weight Llama; the first stage an in-memory vector store with fake embeddings.

The one async standard test runs under anyio's pytest plugin (``pytest.mark.anyio``), so these tests do not
need pytest-asyncio's configuration.
"""

from __future__ import annotations

import pytest
from conftest import FACT_QUERY as QUERY
from conftest import FACTS as TEXTS
from conftest import TINY_HEADS as HEADS

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_text_splitters")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from langchain_text_splitters import RecursiveCharacterTextSplitter

from qrhead_integrations.langchain import QRHeadChunkRetriever, QRHeadReranker, QRHeadRerankRetriever

pytestmark = pytest.mark.anyio



@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


class _WithModel:
    """Gives the (property-based) constructor parameters the module's tiny model."""

    model_dir: str = ""

    @pytest.fixture(autouse=True)
    def _model(self, model_dir):
        type(self).model_dir = model_dir

    @property
    def retriever_query_example(self) -> str:
        return QUERY


class TestQRHeadRerankRetrieverStandard(_WithModel, RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[QRHeadRerankRetriever]:
        return QRHeadRerankRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
        store.add_documents([Document(page_content=t, id=f"d{i}") for i, t in enumerate(TEXTS)])
        return {"base_retriever": store.as_retriever(search_kwargs={"k": 5}),
                "reranker": QRHeadReranker(model=self.model_dir, heads=HEADS)}


class TestQRHeadChunkRetrieverStandard(_WithModel, RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[QRHeadChunkRetriever]:
        return QRHeadChunkRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"document": Document(page_content="\n\n".join(TEXTS), id="facts"),
                "reranker": QRHeadReranker(model=self.model_dir, heads=HEADS),
                "text_splitter": RecursiveCharacterTextSplitter(chunk_size=80, chunk_overlap=0)}
