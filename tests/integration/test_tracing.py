"""One trace per document across Kafka: upload -> parse -> chunk -> embed -> finalize."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragstream import topology, tracing
from ragstream.consumers.worker import build_runner
from ragstream.kafka import consumer_config
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare

pytestmark = pytest.mark.integration


def test_traceparent_parsing() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.parse_traceparent(good) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert tracing.parse_traceparent(good.encode()) is not None
    assert tracing.parse_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert tracing.parse_traceparent("garbage") is None
    assert tracing.parse_traceparent(None) is None


def _headers_by_topic(settings: Settings, topic: str, expect: int) -> list[dict[str, bytes]]:
    consumer = Consumer(consumer_config(settings, f"trace-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic(topic)])
    found: list[dict[str, bytes]] = []
    for _ in range(120):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            found.append(dict(msg.headers() or []))
        if len(found) >= expect:
            break
    consumer.close()
    return found


def test_one_trace_per_document_through_every_stage(
    settings: Settings, request: pytest.FixtureRequest
) -> None:
    tracing.setup(settings, "ragstream-test")
    exporter = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(exporter))
    request.addfinalizer(exporter.shutdown)  # later tests' spans are not kept

    submitter = prepare(settings)
    name, data = corpus.mixed(1, seed=41)[0]
    upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.span("POST /v1/documents", parent=tracing.context_from(upstream)):
        document_id = str(submitter.submit(data, filename=name).document_id)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    for stage in topology.STAGE_NAMES:
        build_runner(settings, stage).run(idle_timeout_s=5)

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    docs = [s for s in spans if s.attributes.get("ragstream.document_id") == document_id]
    stages_seen = [s.attributes.get("ragstream.stage") for s in docs if s.name.endswith("document")]
    assert set(stages_seen) == set(topology.STAGE_NAMES), stages_seen
    assert {format(s.context.trace_id, "032x") for s in docs} == {trace_id}
    # Each stage's document span descends from the previous stage's, back to the upload.
    finalize = next(s for s in docs if s.name == "finalize document")
    chain = []
    node = finalize
    while node is not None and node.parent is not None:
        chain.append(node.name)
        node = by_id.get(node.parent.span_id)
    assert chain[:4] == ["finalize document", "embed document", "chunk document", "parse document"]
    assert "upload" in chain
    batches = [s for s in spans if s.name == "embed batch"]
    assert any(document_id in (s.attributes.get("ragstream.document_ids") or ()) for s in batches)

    for topic in topology.STAGE_TOPICS:
        headers = _headers_by_topic(settings, topic, 1)
        assert headers, topic
        assert all(tracing.trace_ids(h) == trace_id for h in headers), topic
