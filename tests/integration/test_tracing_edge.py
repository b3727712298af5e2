"""Traces from the edge: one trace from the HTTP request through every stage to finalize.

The API under uvicorn (``ApiServer``) in this process, spans caught by an in-memory
exporter: the request's ``traceparent`` is continued (a new trace without one),
the API's SQL statements are child spans, the stages join the trace, and the job
API returns its id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ragstream import topology, tracing
from ragstream.consumers.worker import build_runner
from ragstream.embedding.openai_compat import OpenAIEmbedder
from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_api_documents import run_stages
from tests.integration.test_api_server import ApiServer, serve

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
REPROCESS_TRACE_ID = "5c1f3e2d4b6a79881726354453627180"


def _traceparent(trace_id: str, span_id: str = CALLER_SPAN) -> str:
    return f"00-{trace_id}-{span_id}-01"


@pytest.fixture
def exporter(settings: Settings) -> Iterator[InMemorySpanExporter]:
    tracing.setup(settings, "ragstream-test")
    exporter = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # it keeps nothing from later tests


@pytest.fixture
def api(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[ApiServer]:
    yield from serve(settings)


def _trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def _in_trace(spans: Sequence[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if _trace(s) == trace_id), key=lambda s: s.start_time or 0)


def _descends(span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    node: ReadableSpan | None = span
    while node is not None and node.parent is not None:
        if ancestor.context is not None and node.parent.span_id == ancestor.context.span_id:
            return True
        node = by_id.get(node.parent.span_id)
    return False


def _ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of ``span`` and its parents up to the first one not in ``spans``."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    chain = [span.name]
    node = span
    while node.parent is not None and node.parent.span_id in by_id:
        node = by_id[node.parent.span_id]
        chain.append(node.name)
    return chain


def _sql(span: ReadableSpan) -> bool:
    """A statement's span (the SQLAlchemy instrumentation's, either semantic conventions)."""
    attributes = set(span.attributes or {})
    return span.kind == SpanKind.CLIENT and bool({"db.system", "db.system.name"} & attributes)


def _server(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.kind == SpanKind.SERVER and s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_one_trace_from_the_http_request_to_finalize(
    api: ApiServer, exporter: InMemorySpanExporter
) -> None:
    name, data = corpus.mixed(1, seed=47)[0]
    with api.client() as client:
        answer = client.post(
            "/v1/documents",
            files=[("file", (name, data))],
            headers={"traceparent": _traceparent(TRACE_ID)},
        )
        assert answer.status_code == 202, answer.text
        accepted = answer.json()["documents"][0]
        run_stages(api.settings, documents=1)
        job = client.get(accepted["status_url"]).json()
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200
    assert job["status"] == "complete", job
    assert job["trace_id"] == TRACE_ID

    spans = exporter.get_finished_spans()
    trace = _in_trace(spans, TRACE_ID)
    print("\nspans of trace", TRACE_ID, "in start order:")
    for s in trace:
        print(f"  {s.name}  [{s.kind.name.lower()}]")

    # The HTTP server span continues the caller's span; the request's own spans descend from it.
    server = _server(trace, "POST /v1/documents")
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "opentelemetry.instrumentation.fastapi"
    assert server.parent is not None and server.parent.is_remote
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    request = [s for s in trace if s is server or _descends(s, server, spans)]
    names = [s.name for s in request]
    assert "submit" in names and "upload" in names, names
    request_sql = [s for s in request if _sql(s)]
    assert any(s.name.startswith("INSERT") for s in request_sql), names
    assert any(s.name.startswith("SELECT") for s in request_sql), names

    # Every stage's document spans are in the trace; finalize's ancestors lead back to the caller.
    document_id = accepted["document_id"]
    stages = {
        s.attributes.get("ragstream.stage")
        for s in trace
        if s.name.endswith(" document")
        and s.attributes
        and s.attributes.get("ragstream.document_id") == document_id
    }
    assert stages == set(topology.STAGE_NAMES), stages
    finalize = next(s for s in trace if s.name == "finalize document")
    assert _ancestors(finalize, spans) == [
        "finalize document",
        "embed document",
        "chunk document",
        "parse document",
        "upload",
        "submit",
        "POST /v1/documents",
    ]

    # No span of the probes or the scrape; every SQL span is some request's child, never a root.
    assert not [s for s in spans if s.name.split()[-1] in tracing.UNTRACED_PATHS]
    get_job = _server(spans, "GET /v1/jobs/{job_id}")
    assert get_job.parent is None and _trace(get_job) != TRACE_ID  # no traceparent: a new trace
    sql = [s for s in spans if _sql(s)]
    assert sql and all(s.parent is not None for s in sql)
    assert {_trace(s) for s in sql} == {TRACE_ID, _trace(get_job)}


def test_a_request_without_traceparent_starts_a_trace_the_job_returns(
    api: ApiServer, exporter: InMemorySpanExporter
) -> None:
    with api.client() as client:
        answer = client.post("/v1/documents", files=[("file", ("a.txt", corpus.text(48)))])
        assert answer.status_code == 202, answer.text
        accepted = answer.json()["documents"][0]
        job = client.get(accepted["status_url"]).json()
    spans = exporter.get_finished_spans()
    server = _server(spans, "POST /v1/documents")
    assert server.parent is None
    trace_id = _trace(server)
    assert len(trace_id) == 32 and set(trace_id) != {"0"}
    assert job["trace_id"] == trace_id
    trace = _in_trace(spans, trace_id)
    assert {"submit", "upload"} <= {s.name for s in trace}
    assert any(_sql(s) for s in trace)


def test_a_reprocess_is_a_job_with_its_own_trace(
    api: ApiServer, exporter: InMemorySpanExporter
) -> None:
    name, data = corpus.mixed(1, seed=49)[0]
    with api.client() as client:
        accepted = client.post(
            "/v1/documents",
            files=[("file", (name, data))],
            headers={"traceparent": _traceparent(TRACE_ID)},
        ).json()["documents"][0]
        run_stages(api.settings, documents=1)
        chunks = client.get(accepted["status_url"]).json()["chunks_total"]
        started = client.post(
            f"{accepted['document_url']}/reprocess",
            params={"from_stage": "chunk"},
            headers={"traceparent": _traceparent(REPROCESS_TRACE_ID)},
        )
        assert started.status_code == 202, started.text
        for stage, expect in (("chunk", 1), ("embed", chunks), ("finalize", chunks)):
            stats = build_runner(api.settings, stage).run(max_messages=expect, idle_timeout_s=20)
            assert stats.processed == expect, (stage, stats)
        first = client.get(accepted["status_url"]).json()
        again = client.get(started.json()["status_url"]).json()
    assert first["trace_id"] == TRACE_ID
    assert again["status"] == "complete" and again["trace_id"] == REPROCESS_TRACE_ID
    trace = _in_trace(exporter.get_finished_spans(), REPROCESS_TRACE_ID)
    server = _server(trace, "POST /v1/documents/{document_id}/reprocess")
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    stages = {
        s.attributes.get("ragstream.stage")
        for s in trace
        if s.name.endswith(" document") and s.attributes
    }
    assert stages == {"chunk", "embed", "finalize"}
    finalize = next(s for s in trace if s.name == "finalize document")
    assert _ancestors(finalize, trace) == [
        "finalize document",
        "embed document",
        "chunk document",
        "reprocess",
        "POST /v1/documents/{document_id}/reprocess",
    ]


def test_http_client_calls_are_child_spans_that_carry_the_trace(
    exporter: InMemorySpanExporter,
) -> None:
    sent: list[str | None] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("traceparent"))
        inputs = json.loads(request.content)["input"]
        data = [{"index": i, "embedding": [1.0] + [0.0] * 383} for i in range(len(inputs))]
        return httpx.Response(200, json={"data": data})

    embedder = OpenAIEmbedder(
        base_url="http://embedder.test/v1",
        model="text-embedding-3-small",
        api_key=None,
        dimensions=384,
        max_input_tokens=8191,
        timeout_s=5.0,
        transport=httpx.MockTransport(endpoint),
    )
    embedder.embed(["outside any span"])  # a call of its own starts no trace
    with tracing.span("POST /v1/search") as request:
        embedder.embed(["inside a request"])
    embedder.close()
    calls = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(calls) == 1, [s.name for s in calls]
    call = calls[0]
    assert call.context is not None and call.parent is not None
    assert call.parent.span_id == request.get_span_context().span_id
    assert call.context.trace_id == request.get_span_context().trace_id
    attributes = call.attributes or {}
    url = attributes.get("url.full") or attributes.get("http.url")  # new or old conventions
    assert url == "http://embedder.test/v1/embeddings"
    assert tracing.parse_traceparent(sent[1]) == (_trace(call), f"{call.context.span_id:016x}")
