"""The FastAPI application: ``create_app(settings)``, served by ``ragstream api`` (uvicorn)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from confluent_kafka import KafkaException
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragstream import tracing
from ragstream.api import metrics
from ragstream.api.routes import (
    alerts,
    dashboard,
    documents,
    health,
    jobs,
    notifications,
    search,
    webhooks,
)
from ragstream.api.services import Services
from ragstream.errors import PermanentError, RagstreamError, UnsupportedDocument
from ragstream.settings import Settings


def create_app(settings: Settings, *, poller: bool = True) -> FastAPI:
    """The API for ``settings``; start-up refuses a database not at the migration head.

    ``poller`` runs the LlamaParse poller for overdue jobs in this process. Every
    request but the probes and ``/metrics`` is traced: an incoming ``traceparent``
    is continued, else the request starts a trace (``ragstream/tracing.py``).
    """
    tracing.setup(settings, "ragstream-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = Services.start(settings, poller=poller)
        try:
            yield
        finally:
            app.state.services.close()
            tracing.flush()

    app = FastAPI(
        title="ragstream",
        version="1",
        summary="Document ingestion for retrieval-augmented generation on Apache Kafka.",
        lifespan=lifespan,
    )
    for router in (
        documents.router,
        jobs.router,
        search.router,
        webhooks.router,
        notifications.router,
        health.router,
        alerts.router,
        dashboard.router,
    ):
        app.include_router(router)
    _add_error_handlers(app, settings)
    app.add_middleware(_BodyCap)
    app.add_middleware(_Metrics)
    tracing.instrument_app(app)  # outermost: the error handlers and middlewares run in its span
    return app


def _unavailable(settings: Settings, what: str) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"{what} unavailable; whatever this request already stored is kept, "
            "and the same request can be sent again safely (it is idempotent): retry after "
            "Retry-After seconds"
        },
        status_code=503,
        headers={"Retry-After": str(settings.api_retry_after_s)},
    )


def _add_error_handlers(app: FastAPI, settings: Settings) -> None:
    """The one mapping of errors to HTTP answers; routes raise, they do not translate."""

    @app.exception_handler(RagstreamError)
    async def ragstream_error(request: Request, exc: RagstreamError) -> JSONResponse:
        if exc.retryable:
            return _unavailable(settings, "a dependency is")
        if isinstance(exc, UnsupportedDocument):
            return JSONResponse({"detail": exc.message}, status_code=415)
        if isinstance(exc, PermanentError):  # e.g. an empty document
            return JSONResponse({"detail": exc.message}, status_code=422)
        return JSONResponse({"detail": exc.message}, status_code=500)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
        return _unavailable(settings, "the database is")

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return _unavailable(settings, "the database is")
        raise exc

    @app.exception_handler(KafkaException)
    async def broker_down(request: Request, exc: KafkaException) -> JSONResponse:
        return _unavailable(settings, "the broker is")


BODY_BYTES = 1024 * 1024
"""Largest body of a request that is neither an upload nor a webhook (which count their own)."""
OWN_LIMITS = frozenset({("POST", "/v1/documents"), ("POST", "/v1/webhooks/llamaparse")})


class _BodyCap:
    """Refuses with 413 a body over ``BODY_BYTES``, declared or received, before it is read
    whole: FastAPI reads a JSON body before the route's key is checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in OWN_LIMITS:
            await self.app(scope, receive, send)
            return
        too_large = HTTPException(413, f"request body is larger than {BODY_BYTES} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > BODY_BYTES:
                response = JSONResponse({"detail": too_large.detail}, status_code=413)
                await response(scope, receive, send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > BODY_BYTES:
                    raise too_large  # FastAPI passes it on as is: answered 413
            return message

        await self.app(scope, counted, send)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Metrics:
    """Counts and times every request by its route template (not its raw path) and its
    method (any other method counts as ``other``): no label carries what a caller sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.REQUESTS.labels(route, method, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
