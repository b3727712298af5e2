"""``ragstream dlq list|show|replay`` on real topics, with the real parse stage failing messages."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select
from typer.testing import CliRunner

from ragstream import ids, topology
from ragstream.cli import app
from ragstream.consumers.worker import build_runner
from ragstream.db import blobs
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob, Document
from ragstream.kafka import admin_client
from ragstream.ops import dlq, groups
from ragstream.producers.producer import EventProducer
from ragstream.progress import documents_progress
from ragstream.schemas.codec import make_codec
from ragstream.settings import Settings
from tests import corpus
from tests.chaos.hostile import truncated_pdf
from tests.pipeline import expected_chunks, prepare, settings_env

pytestmark = pytest.mark.integration


def _parse(settings: Settings, expect: int) -> tuple[int, int]:
    stats = build_runner(settings, "parse").run(max_messages=expect, idle_timeout_s=15)
    return stats.processed, stats.failed


def _end(settings: Settings, topic: str) -> int:
    admin = admin_client(settings)
    name = settings.topic(topic)
    return sum(
        h for _, h in groups.watermarks(admin, name, groups.partitions(admin, name)).values()
    )


def _replay(settings: Settings, **kwargs: str) -> dlq.ReplayOutcome:
    engine = make_engine(settings)
    try:
        (outcome,) = dlq.replay(settings, engine, make_codec(settings), stage="parse", **kwargs)
        return outcome
    finally:
        engine.dispose()


def test_list_show_and_replay_until_the_attempts_are_used_up(settings: Settings) -> None:
    submitter = prepare(settings)
    producer = EventProducer(settings)
    for _ in range(2):
        producer.send(settings.topic(topology.UPLOADED), key=b"junk", value=b"not an event")
    producer.wait()
    good_name, good_data = corpus.mixed(1, seed=95)[0]
    submitter.submit(good_data, filename=good_name)
    broken = submitter.submit(truncated_pdf(95), filename="broken.pdf")
    assert _parse(settings, 4) == (1, 3)

    (summary,) = dlq.summarize(settings, "parse")
    assert (summary.total, summary.pending, summary.exhausted) == (3, 3, 0)
    assert summary.by_class == {"UndecodableEvent": 2, "CorruptDocument": 1}
    assert summary.newest[0].timestamp_ms >= summary.newest[-1].timestamp_ms
    cli, env = CliRunner(), settings_env(settings)
    listed = json.loads(
        cli.invoke(app, ["dlq", "list", "--stage", "parse", "--json"], env=env).stdout
    )
    assert [(d["stage"], d["messages"], d["pending"]) for d in listed] == [("parse", 3, 3)]
    assert {
        d["stage"] for d in json.loads(cli.invoke(app, ["dlq", "list", "--json"], env=env).stdout)
    } == {*topology.STAGE_NAMES, "reembed"}  # the stages' DLQs and the shadow builds'

    pdf = next(m for m in summary.newest if m.error_class == "CorruptDocument")
    assert pdf.document_id == broken.document_id and pdf.attempt == 1
    assert pdf.origin.startswith(settings.topic(topology.UPLOADED) + ":")
    assert dlq.show(settings, pdf.id) == pdf
    shown = json.loads(cli.invoke(app, ["dlq", "show", pdf.id], env=env).stdout)
    assert shown["event"]["schema"].endswith("DocumentUploaded")
    assert shown["event"]["fields"]["document_id"] == str(broken.document_id)
    assert shown["headers"]["ragstream-dlq-error-class"] == "CorruptDocument"
    junk = next(m for m in summary.newest if m.error_class == "UndecodableEvent")
    assert (
        "not an event"
        in json.loads(cli.invoke(app, ["dlq", "show", junk.id], env=env).stdout)["value_preview"]
    )
    missing = cli.invoke(app, ["dlq", "show", f"{pdf.topic}:0:99999"], env=env)
    assert missing.exit_code == 2 and "holds offsets" in missing.output

    uploaded = _end(settings, topology.UPLOADED)
    attempts = []
    for attempt in (2, 3):
        outcome = _replay(settings)
        assert len(outcome.replayed) == 3 and not outcome.kept
        assert outcome.documents_reopened == 1  # the failed PDF goes back to `uploaded`
        assert _replay(settings).replayed == []  # a second replay sends nothing again
        assert _end(settings, topology.UPLOADED) == uploaded + 3 * (attempt - 1)
        assert _parse(settings, 3) == (0, 3)  # they fail again, and come back
        (summary,) = dlq.summarize(settings, "parse", newest=3)
        attempts.append(sorted(m.attempt for m in summary.newest))
    assert attempts == [[2, 2, 2], [3, 3, 3]]
    assert summary.exhausted == 3

    outcome = _replay(settings)  # attempt 4 would exceed dlq_max_attempts = 3: they stay
    assert outcome.replayed == [] and len(outcome.kept) == 3
    assert _end(settings, topology.UPLOADED) == uploaded + 6
    final = _replay(settings)
    assert final.replayed == [] and final.kept == [] and final.already == 9
    (summary,) = dlq.summarize(settings, "parse")
    assert (summary.total, summary.pending) == (9, 0)
    engine = make_engine(settings)
    with engine.connect() as conn:
        status = conn.execute(select(Document.status).where(Document.id == broken.document_id))
        assert status.scalar_one() == "failed"
    engine.dispose()


def test_replay_by_error_class_reopens_a_fixed_document_and_never_resends(
    settings: Settings,
) -> None:
    """A document whose blob went missing completes once the blob is back and it is replayed.

    A junk message sits before it on the same partition, so replaying only
    ``MissingBlob`` must remember a handled offset above the group's position.
    """
    submitter = prepare(settings)
    name, data = corpus.mixed(1, seed=96)[0]
    key = str(ids.document_id(settings.tenant, blobs.sha256_of(data)))
    producer = EventProducer(settings)
    producer.send(settings.topic(topology.UPLOADED), key=key, value=b"junk")
    producer.wait()
    doc = submitter.submit(data, filename=name)
    assert str(doc.document_id) == key
    engine = make_engine(settings)
    with engine.begin() as conn:  # the blob vanishes before the parser reads it
        conn.execute(delete(Blob).where(Blob.sha256 == blobs.sha256_of(data)))
    assert _parse(settings, 2) == (0, 2)
    (summary,) = dlq.summarize(settings, "parse")
    assert summary.by_class == {"MissingBlob": 1, "UndecodableEvent": 1}
    junk, lost = sorted(summary.newest, key=lambda m: m.offset)
    assert (junk.partition, junk.error_class, lost.error_class) == (
        lost.partition,
        "UndecodableEvent",
        "MissingBlob",
    )

    with engine.begin() as conn:
        blobs.put(conn, data)
    first = _replay(settings, error_class="MissingBlob")
    assert [m.id for m in first.replayed] == [lost.id] and first.filtered == 1
    assert first.documents_reopened == 1
    again = _replay(settings, error_class="MissingBlob")
    assert again.replayed == [] and again.already == 1 and again.filtered == 1
    rest = _replay(settings)
    assert [m.id for m in rest.replayed] == [junk.id] and rest.already == 1
    assert _replay(settings).replayed == []

    assert _parse(settings, 2) == (1, 1)
    (chunks,) = expected_chunks(settings, [(name, data)]).values()
    for stage, messages in (("chunk", 1), ("embed", chunks), ("finalize", chunks)):
        build_runner(settings, stage).run(max_messages=messages, idle_timeout_s=20)
    progress = documents_progress(engine, [doc.document_id])[doc.document_id]
    assert (progress.status, progress.chunks, progress.vectors) == ("complete", chunks, chunks)
    engine.dispose()
