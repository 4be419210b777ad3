"""The FastAPI app: Cohere (``/v1/rerank``, ``/v2/rerank``) and TEI (``/rerank``) rerank endpoints.

    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.serve import Limits, create_app

    app = create_app(QRHeadScorer.from_pretrained(), Limits(max_documents=200), api_key="secret")
    # uvicorn.run(app, host="127.0.0.1", port=8000)   (or: qrhead serve --port 8000)

Errors are JSON objects with ``message`` (what Cohere clients read) and ``error``/``error_type`` (what
TEI clients read): 400 for a request the scorer refuses (empty query...), 401 for a missing or wrong
API key, 413 for a request over a limit (the body also names the ``limit``, the request's ``value`` and
the ``max``), 422 for a malformed body, 503 when the queue is full (with ``Retry-After``).
No request content is logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from .config import Limits, ScorerSettings, require_extra

require_extra("serve", "qrhead_integrations.serve.app")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from .schemas import (  # noqa: E402
    ErrorBody,
    ModelCard,
    ModelList,
    RerankRequest,
    RerankResponse,
    TEIRank,
    TEIRerankRequest,
)
from .worker import LimitExceededError, OverloadedError, RerankOutcome, RerankWorker  # noqa: E402

logger = logging.getLogger("qrhead_integrations.serve")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "the scorer refused the request (e.g. an empty query)"),
        (401, "missing or wrong API key (when the server has one)"),
        (413, "over a limit: documents, tokens or body size (named in 'limit')"),
        (422, "malformed request body"),
        (503, "overloaded (queue full) or shutting down: retry later"),
    )
}


class ServeError(Exception):
    """An error answered as JSON: ``{"message", "error", "error_type", ...extra}``."""

    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"message": self.message, "error": self.message, "error_type": self.error_type, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before they are parsed (pure ASGI).

    A declared ``Content-Length`` over the limit is refused without reading the body; a body without
    one (chunked) is read up to the limit, then handed on.
    """

    def __init__(self, app: Any, max_bytes: int | None):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.max_bytes is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send, declared)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send, size)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Callable, size: int) -> None:
        err = LimitExceededError("max_body_bytes", size, self.max_bytes, "body bytes")
        body = json.dumps({"message": str(err), "error": str(err), "error_type": "limit",
                           "limit": err.limit, "value": err.value, "max": err.maximum}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Check ``Authorization: Bearer <key>`` before anything else reads the request (pure ASGI).

    A request with a missing or wrong key gets 401 whatever its body (malformed, oversized or not yet
    sent): the body is never read. ``/health`` needs no key (load balancers); the API docs need one
    unless ``public_docs``. ``key()`` is read per request (the key may be set when the app starts).
    """

    def __init__(self, app: Any, key: Callable[[], str | None], open_paths: frozenset[str]):
        self.app = app
        self.key = key
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        key = self.key() if scope["type"] == "http" else None
        if key is None or scope.get("path", "") in self.open_paths or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1"), key.encode()):
            await self.app(scope, receive, send)
            return
        message = "missing or invalid API key (send 'Authorization: Bearer <key>')"
        body = json.dumps({"message": message, "error": message, "error_type": "authentication"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class ServerState:
    """What the routes use: the scorer's description and the worker (``app.state.qrhead``)."""

    def __init__(self, limits: Limits, api_key: str | None):
        self.limits = limits
        self.api_key = api_key
        self.scorer: Any = None
        self.worker: RerankWorker | None = None
        self.model_name = ""
        self.heads = ""
        self.head_set = ""

    def attach(self, scorer: Any) -> None:
        """Serve ``scorer``: describe it and give it a (not yet started) worker."""
        self.scorer = scorer
        self.worker = RerankWorker(scorer, self.limits)
        self.model_name = str(scorer.model_name)
        self.heads = str(scorer.heads)
        self.head_set = str(getattr(scorer.heads, "name", ""))

    async def rank(self, query: str, documents: list[Any], request: Request | None = None) -> RerankOutcome:
        """Queue a request on the worker, translating its errors into HTTP errors. With ``request``, a
        client that disconnects while waiting frees its slot (the request is dropped, not scored)."""
        if self.worker is None:
            raise ServeError(503, "the model is not loaded yet", "unavailable", {"Retry-After": "5"})
        work = asyncio.ensure_future(self.worker.arank(query, documents))
        if request is not None:
            gone = asyncio.ensure_future(_client_gone(request))
            try:
                await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
            if not work.done():
                work.cancel()  # the worker drops it (or finishes it if already scoring); its slot is freed
                raise ServeError(499, "the client closed the request", "disconnected")
        try:
            return await work
        except LimitExceededError as exc:
            raise ServeError(413, str(exc), "limit", limit=exc.limit, value=exc.value, max=exc.maximum) from None
        except OverloadedError as exc:
            raise ServeError(503, str(exc), "overloaded", {"Retry-After": "1"}) from None
        except (TypeError, ValueError) as exc:
            raise ServeError(400, str(exc), "validation") from None


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (its body has been read: what is left to receive is the end)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(
    scorer_or_settings: Any,
    limits: Limits | None = None,
    *,
    api_key: str | None = None,
    api_key_env: str | None = None,
    docs: bool = True,
    public_docs: bool = False,
    title: str = "QRHead rerank server",
) -> FastAPI:
    """The HTTP app around one scorer.

    ``scorer_or_settings``: a ready :class:`~qrhead_integrations.QRHeadScorer` (or an object with its
    ``encode``/``count_tokens``/``model_name``/``heads``), a :class:`ScorerSettings` or a function
    returning a scorer; the last two are loaded when the app starts (lifespan). ``api_key``: when set,
    every route but ``/health`` needs ``Authorization: Bearer <api_key>``, checked before the body is
    read (a wrong key gets 401 whatever the body); without it, ``api_key_env`` names an environment
    variable read when the app starts (so that a key reaches Ray replicas through their environment, not
    through the deployment's arguments). ``docs=False`` turns off ``/docs``, ``/redoc`` and
    ``/openapi.json``; with a key they need it too, unless ``public_docs=True``.
    """
    from .. import __version__

    limits = limits or Limits()
    state = ServerState(limits, api_key or None)
    loader: Callable[[], Any] | None = None
    if isinstance(scorer_or_settings, ScorerSettings):
        loader = scorer_or_settings.load
    elif callable(scorer_or_settings) and not hasattr(scorer_or_settings, "encode"):
        loader = scorer_or_settings
    else:
        state.attach(scorer_or_settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.api_key is None and api_key_env:
            state.api_key = os.environ.get(api_key_env) or None
        if state.scorer is None and loader is not None:
            state.attach(await asyncio.to_thread(loader))
        elif state.worker is None or state.worker.stopped:  # the app started again (e.g. in tests)
            state.attach(state.scorer)
        state.worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.worker.stop)

    app = FastAPI(
        title=title, version=__version__, lifespan=lifespan,
        description="Re-ranks documents with a language model's query-focused retrieval heads (QRHead). "
                    "Speaks Cohere's rerank API (/v1/rerank, /v2/rerank) and Hugging Face TEI's (/rerank).",
        docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.qrhead = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    open_paths = {"/health"} | ({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"} if public_docs else set())
    app.add_middleware(AuthMiddleware, key=lambda: state.api_key, open_paths=frozenset(open_paths))  # outermost

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
        message = "invalid request: " + "; ".join(parts) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return ServeError(422, message, "validation", detail=detail).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ServeError(exc.status_code, str(exc.detail), "http", getattr(exc, "headers", None)).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error while serving %s: %s", request.url.path, type(exc).__name__,
                     exc_info=(type(exc), exc, exc.__traceback__))
        return ServeError(500, "internal server error", "internal").response()

    async def cohere(req: RerankRequest, version: str, request: Request) -> RerankResponse:
        docs: list[Any] = []
        for d in req.documents:
            if isinstance(d, str):
                docs.append(d)
            else:
                docs.append({"text": d.text, "title": d.title} if d.title else {"text": d.text})
        outcome = await state.rank(req.query, docs, request)
        ranking = outcome.ranking if req.top_n is None else outcome.ranking[: req.top_n]
        results = []
        for r in ranking:
            item: dict[str, Any] = {"index": r.index, "relevance_score": float(r.score)}
            if req.return_documents:
                d = req.documents[r.index]
                item["document"] = {"text": d} if isinstance(d, str) else d.model_dump(exclude_none=True)
            results.append(item)
        meta: dict[str, Any] = {"api_version": {"version": version},
                                "tokens": {"input_tokens": outcome.total_tokens}}
        truncated = sorted(r.index for r in outcome.ranking if getattr(r, "truncated", False))
        if truncated:
            meta["warnings"] = [f"documents {truncated} were truncated to fit the model's context; "
                                "their scores read the beginning only"]
        return RerankResponse(id=str(uuid.uuid4()), results=results, meta=meta, model=state.model_name,
                              usage={"total_tokens": outcome.total_tokens})

    common = dict(response_model_exclude_none=True, responses=_ERRORS)

    @app.post("/v1/rerank", response_model=RerankResponse, tags=["rerank"], summary="Cohere rerank (v1)",
              **common)
    async def rerank_v1(req: RerankRequest, request: Request) -> RerankResponse:
        """Rank ``documents`` for ``query``, best first. Cohere's v1 request and response."""
        return await cohere(req, "1", request)

    @app.post("/v2/rerank", response_model=RerankResponse, tags=["rerank"], summary="Cohere rerank (v2)",
              **common)
    async def rerank_v2(req: RerankRequest, request: Request) -> RerankResponse:
        """Rank ``documents`` for ``query``, best first. Cohere's v2 request and response
        (``cohere.ClientV2(base_url=...)``, LangChain's and LlamaIndex's ``CohereRerank``)."""
        return await cohere(req, "2", request)

    @app.post("/rerank", response_model=list[TEIRank], tags=["rerank"], summary="TEI rerank", **common)
    async def rerank_tei(req: TEIRerankRequest, request: Request) -> list[TEIRank]:
        """Rank ``texts`` for ``query``, best first. Hugging Face Text Embeddings Inference's request and
        response; ``score`` is the calibrated QRHead score with or without ``raw_scores``."""
        outcome = await state.rank(req.query, list(req.texts), request)
        return [TEIRank(index=r.index, score=float(r.score), text=req.texts[r.index] if req.return_text else None)
                for r in outcome.ranking]

    @app.get("/v1/models", response_model=ModelList, tags=["info"], responses={401: _ERRORS[401]})
    async def models() -> ModelList:
        """The served model (any ``model`` value is accepted in requests)."""
        return ModelList(data=[ModelCard(id=state.model_name, heads=state.heads, head_set=state.head_set)])

    @app.get("/health", tags=["info"])
    async def health() -> JSONResponse:
        """``status: ok`` while the model worker runs (503 otherwise), the model, the queue and counters.
        Needs no API key (for load balancers); shows no request content."""
        worker = state.worker
        ok = worker is not None and worker.alive
        body = {
            "status": "ok" if ok else "unavailable",
            "model": state.model_name, "heads": state.heads, "head_set": state.head_set,
            "queue": {"pending": worker.pending if worker else 0, "max_queue": limits.max_queue},
            "stats": worker.stats() if worker else {},
            "limits": asdict(limits),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
