"""Traces across Kafka: a W3C ``traceparent`` header rides on every event.

The upload starts (or joins) a trace; each stage opens one span per batch, with
the batch's document ids, and one child span per document under the context
its input event carried. The events a stage emits carry that child's
``traceparent``, so one trace shows upload -> parse -> chunk -> embed -> finalize.

The trace starts at the edge: the API reads an incoming W3C ``traceparent``
(:func:`instrument_app`, the OpenTelemetry ASGI middleware) or starts a trace, and
the upload's events carry it on; its SQL statements (:func:`instrument_engine`)
and HTTP client calls (:func:`instrument_http_client`) are child spans. Those
library spans are recorded only under a span of ours: a statement or a call
outside any request or batch (the poller's loop, a pool's checks) starts no
trace of its own.

The OpenTelemetry SDK is always set up (spans get ids and propagate); spans are
exported over OTLP/HTTP only when ``settings.otlp_endpoint`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import Link, Span, Status, StatusCode
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ragstream.settings import Settings

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from sqlalchemy import Engine

TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
# The same processors, for libraries' spans: recorded under a span of ours, never as a root.
_children: TracerProvider | None = None
UNTRACED_PATHS = ("/healthz", "/readyz", "/metrics")
"""API paths that start no span: probes and scrapes, many a minute, would drown the traces."""

Headers = list[tuple[str, str | bytes | None]]


def setup(settings: Settings, service: str) -> TracerProvider:
    """Install the SDK once per process; OTLP export only with ``otlp_endpoint``."""
    global _provider, _children
    if _provider is not None:
        return _provider
    resource = Resource.create({"service.name": service})
    processors = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
    provider = TracerProvider(resource=resource, active_span_processor=processors)
    _children = TracerProvider(
        resource=resource,
        sampler=ParentBased(ALWAYS_OFF),
        active_span_processor=processors,
        shutdown_on_exit=False,  # the processors are the main provider's to shut down
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def add_processor(processor: SpanProcessor) -> None:
    """Send finished spans somewhere else too (tests use an in-memory exporter)."""
    if _provider is None:
        raise RuntimeError("tracing.setup() first")
    _provider.add_span_processor(processor)


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()


def flush() -> None:
    """Export what has ended so far (a server stopping; the process may go on, as in tests)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)  # a collector that is down delays no more


def tracer() -> trace.Tracer:
    return trace.get_tracer("ragstream")


# --- the header -------------------------------------------------------------------------


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid W3C traceparent, else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _TRACEPARENT.match((value or "").strip().lower())
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1), match.group(2)


def context_from(value: str | bytes | None) -> Context | None:
    """The remote parent a traceparent names; None when absent or invalid."""
    if parse_traceparent(value) is None:
        return None
    text = value.decode("ascii") if isinstance(value, bytes) else value
    return _propagator.extract({TRACEPARENT: text or ""})


def traceparent_of(ctx: Context | None = None) -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    return carrier.get(TRACEPARENT)


def header(ctx: Context | None = None) -> Headers:
    """Kafka headers carrying ``ctx`` (default: the current context); empty without a span."""
    value = traceparent_of(ctx)
    return [(TRACEPARENT, value.encode())] if value else []


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# --- the edge and the libraries ------------------------------------------------------------


def instrument_app(app: FastAPI) -> None:
    """A server span per request, child of an incoming ``traceparent`` or a new trace's root.

    Not for :data:`UNTRACED_PATHS`; the ASGI ``receive``/``send`` spans (one per body
    chunk of an upload) are left out. Call :func:`setup` first. FastAPI's own telemetry
    (in its newer releases, on once a tracer provider is set) finds this middleware in
    the stack and stands back, so a request has one server span.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: Engine) -> None:
    """A child span per SQL statement run on ``engine`` under a span (none before
    :func:`setup`).

    The engine's own event listeners, not ``SQLAlchemyInstrumentor().instrument()``,
    which patches ``create_engine`` for the whole process (and declares SQLAlchemy < 2.1).
    """
    if _children is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.metrics import get_meter

    name = "opentelemetry.instrumentation.sqlalchemy"
    usage = get_meter(name, __version__).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    tracer_ = trace.get_tracer(name, __version__, _children)
    EngineTracer(tracer_, engine, usage)  # type: ignore[no-untyped-call]


def instrument_http_client(client: httpx.Client) -> None:
    """A child span per request ``client`` sends under a span, with its ``traceparent``
    sent along (none before :func:`setup`)."""
    if _children is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_children)


# --- spans ------------------------------------------------------------------------------


@contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """A span made current for the block; an exception marks it failed and propagates.

    ``parent`` continues a remote trace, e.g. ``context_from(request.headers["traceparent"])``.
    """
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as current:
        yield current


@dataclass
class BatchTrace:
    """The spans of one stage batch: the batch itself, and one per document."""

    batch: Span
    documents: dict[str, Span] = field(default_factory=dict)

    def header_for(self, document_id: str | None) -> Headers:
        """What an event about ``document_id`` carries downstream."""
        doc = self.documents.get(document_id or "")
        if doc is None:
            return header(trace.set_span_in_context(self.batch))
        return header(trace.set_span_in_context(doc))

    def fail(self, exc: BaseException) -> None:
        for s in (self.batch, *self.documents.values()):
            s.record_exception(exc)
            s.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@contextmanager
def batch_spans(
    stage: str,
    topic: str,
    messages: Sequence[tuple[str | None, str | bytes | None]],
) -> Iterator[BatchTrace]:
    """Spans for a batch of ``(document_id, traceparent)`` messages.

    The batch span links to every incoming context (a batch mixes traces); each
    document's span is a child of the context its first message carried.
    """
    parents: dict[str, Context | None] = {}
    links = []
    for document_id, value in messages:
        ctx = context_from(value)
        if ctx is not None:
            links.append(Link(trace.get_current_span(ctx).get_span_context()))
        if document_id and document_id not in parents:
            parents[document_id] = ctx
    documents = sorted(parents)
    batch = tracer().start_span(
        f"{stage} batch",
        kind=SpanKind.CONSUMER,
        links=links[:128],
        attributes={
            "ragstream.stage": stage,
            "messaging.destination.name": topic,
            "messaging.batch.message_count": len(messages),
            "ragstream.document_ids": documents[:256],
        },
    )
    result = BatchTrace(batch)
    for document_id in documents:
        parent = parents[document_id] or trace.set_span_in_context(batch)
        result.documents[document_id] = tracer().start_span(
            f"{stage} document",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"ragstream.stage": stage, "ragstream.document_id": document_id},
        )
    token = otel_context.attach(trace.set_span_in_context(batch))
    try:
        yield result
    except BaseException as exc:
        result.fail(exc)
        raise
    finally:
        otel_context.detach(token)
        for s in result.documents.values():
            s.end()
        batch.end()


def trace_ids(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes]) -> str | None:
    """The trace id a message's headers carry, if any (for logs and tests)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == TRACEPARENT:
            parsed = parse_traceparent(value)
            return parsed[0] if parsed else None
    return None
