"""Traces across Kafka: a W3C ``traceparent`` header rides on every event.

The upload starts (or joins) a trace; each stage opens one span per batch, with
the batch's document ids, and one child span per document under the context
its input event carried. The events a stage emits carry that child's
``traceparent``, so one trace shows upload -> parse -> chunk -> embed -> finalize.

The OpenTelemetry SDK is always set up (spans get ids and propagate); spans are
exported over OTLP/HTTP only when ``settings.otlp_endpoint`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, Status, StatusCode
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ragstream.settings import Settings

TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None

Headers = list[tuple[str, str | bytes | None]]


def setup(settings: Settings, service: str) -> TracerProvider:
    """Install the SDK once per process; OTLP export only with ``otlp_endpoint``."""
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
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
