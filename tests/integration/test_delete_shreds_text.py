"""Issue 14 item 9: a deleted document's text is gone from PostgreSQL and from every topic.

Three documents go through the real pipeline (broker and database); one is
deleted. Then every record of every topic of the test's world is read from the
beginning through a consumer (which decompresses): stage topics, their DLQs,
the monitor's alerts. No distinctive piece of the deleted text may appear in a
key, a value or a header, and no sealed text of it may open with any key the
database still holds (crypto-shredding, ``ragstream/crypto.py``). Nor may it
appear in any text, bytea, json or array column of any table. A replay of every
stage from the earliest offset afterwards rebuilds the live documents exactly.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from sqlalchemy import Engine, func, select, text

from ragstream import crypto, topology
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.kafka import admin_client, consumer_config
from ragstream.ops import replay
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import ChunkCreated
from ragstream.settings import Settings
from ragstream.topology import STAGE_NAMES
from tests.integration.test_api_documents import run_stages
from tests.integration.test_api_server import ApiServer, serve, upload

pytestmark = pytest.mark.integration

FILLER = (
    "Streams of records move through the stages of the pipeline one partition at a time, "
    "and every consumer group keeps its own offsets so that each stage can be replayed. "
)


def _document(title: str, sentences: list[str]) -> bytes:
    """Markdown with a heading and the sentences spread over enough text for a few chunks."""
    paragraphs = [f"# {title}", ""]
    for i in range(12):
        paragraphs.append(FILLER * 6 + sentences[i % len(sentences)] + " " + FILLER * 2)
        paragraphs.append("")
        if i == 6:
            paragraphs += [f"## {title} continued", ""]
    return "\n".join(paragraphs).encode()


DOOMED_MARKERS = [
    "Quokka ledger of Zanzibar 7731",
    "periwinkle trebuchet sonata 4412",
    "The obsidian heron counts marbles at midnight",
]
DOOMED = _document(
    "Heron Protocol Vermilion",
    [f"{DOOMED_MARKERS[1]} and {DOOMED_MARKERS[0]}.", f"{DOOMED_MARKERS[2]}."],
)
DOOMED_MARKERS.append("Heron Protocol Vermilion")  # the heading, carried in heading_path
LIVE = {
    "live-one.md": _document("Lantern Almanac", ["The saffron lantern almanac 5520 glows."]),
    "live-two.md": _document("Granite Choir", ["A granite choir of 9034 pebbles hums."]),
}
LIVE_MARKERS = ["saffron lantern almanac 5520", "granite choir of 9034"]


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings, poller=False)


# --- reading everything ----------------------------------------------------------


def _world_topics(settings: Settings) -> list[str]:
    names = admin_client(settings).list_topics(timeout=10).topics
    return sorted(t for t in names if t.startswith(settings.topic_prefix))


def read_everything(settings: Settings) -> dict[str, list[Message]]:
    """Every record of every topic of the world, from the beginning to the end as of now."""
    consumer = Consumer(
        consumer_config(settings, f"scan-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False})
    )
    found: dict[str, list[Message]] = {}
    try:
        for topic in _world_topics(settings):
            found[topic] = []
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends: dict[int, int] = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[p] = high
            if not ends:
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
            deadline = time.monotonic() + 30
            while ends and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                found[topic].append(msg)
                if (msg.offset() or 0) >= ends.get(msg.partition() or 0, 0) - 1:
                    ends.pop(msg.partition() or 0, None)
            assert not ends, f"{topic}: could not read to the end of partitions {sorted(ends)}"
            consumer.unassign()
    finally:
        consumer.close()
    return found


def _contains(blob: bytes | str | None, needles: list[bytes]) -> list[bytes]:
    if blob is None:
        return []
    data = blob.encode() if isinstance(blob, str) else bytes(blob)
    return [n for n in needles if n in data]


def kafka_leaks(
    settings: Settings, engine: Engine, markers: list[str]
) -> tuple[list[str], dict[str, int], int]:
    """Where the markers can be read in the topics: in the clear, or by opening sealed text
    with the keys the database holds. Also the record count per topic and the chunk
    records that could be opened."""
    needles = [m.encode() for m in markers]
    codec = make_codec(settings)
    everything = read_everything(settings)
    with engine.connect() as conn:
        keys = crypto.keys_for(conn, conn.execute(select(Document.id)).scalars())
    leaks: list[str] = []
    opened = 0
    for topic, records in everything.items():
        for msg in records:
            where = f"{topic}[{msg.partition()}]@{msg.offset()}"
            parts: list[tuple[str, bytes | str | None]] = [
                ("key", msg.key()),
                ("value", msg.value()),
            ]
            parts += [(f"header {h[0]}", h[1]) for h in msg.headers() or []]
            for part, blob in parts:
                for needle in _contains(blob, needles):
                    leaks.append(f"{where} {part}: {needle.decode()!r} in the clear")
            value = msg.value()
            if not value or not topic.startswith(settings.topic(topology.CHUNKED)):
                continue
            event = codec.decode(value, ChunkCreated)
            try:
                readable = crypto.open_chunk(event, keys)
            except crypto.Shredded:
                continue
            opened += 1
            plain = readable.text + "\n".join(readable.heading_path)
            for needle in _contains(plain, needles):
                leaks.append(f"{where}: {needle.decode()!r} opens with a key still held")
    return leaks, {t: len(r) for t, r in everything.items()}, opened


def database_leaks(engine: Engine, markers: list[str]) -> list[str]:
    """Every text, varchar, json, jsonb, bytea and array column of every table, searched."""
    leaks: list[str] = []
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
                "JOIN information_schema.tables t USING (table_schema, table_name) "
                "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND "
                "c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', "
                "'bytea', 'ARRAY', 'USER-DEFINED')"
            )
        ).all()
        assert any(c.column_name == "content" for c in columns)  # blobs.content is searched
        for table, column, data_type in columns:
            for marker in markers:
                if data_type == "bytea":
                    condition = f"position(convert_to(:m, 'UTF8') in \"{column}\") > 0"
                else:
                    condition = f'strpos("{column}"::text, :m) > 0'
                hits = conn.execute(
                    text(f'SELECT count(*) FROM "{table}" WHERE {condition}'), {"m": marker}
                ).scalar_one()
                if hits:
                    leaks.append(f"{table}.{column}: {marker!r} in {hits} rows")
    return leaks


# --- the live documents, to compare after a replay -----------------------------------


def live_state(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        documents = conn.execute(
            select(Document.id, Document.status, Document.chunk_count, Document.sha256).order_by(
                Document.id
            )
        ).all()
        chunks = conn.execute(
            select(
                ChunkBuffer.id,
                ChunkBuffer.document_id,
                ChunkBuffer.chunk_index,
                ChunkBuffer.text,
                ChunkBuffer.heading_path,
                ChunkBuffer.pages,
            ).order_by(ChunkBuffer.id)
        ).all()
        vectors = conn.execute(
            select(
                VectorBuffer.id,
                VectorBuffer.chunk_id,
                VectorBuffer.model,
                VectorBuffer.text_sha256,
                VectorBuffer.embedding,
            ).order_by(VectorBuffer.id)
        ).all()
        counts = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in (
                "documents",
                "jobs",
                "document_parse_buffer",
                "document_chunk_buffer",
                "document_vector_buffer",
                "document_keys",
                "blobs",
                "embedding_cache",
            )
        }
    return {
        "documents": [tuple(r) for r in documents],
        "chunks": [tuple(r) for r in chunks],
        "vectors": [(r[0], r[1], r[2], r[3], [round(float(x), 6) for x in r[4]]) for r in vectors],
        "counts": counts,
    }


def _topic_size(settings: Settings, topic: str) -> int:
    consumer = Consumer(consumer_config(settings, f"size-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def replay_every_stage(settings: Settings) -> None:
    """Each stage's group back to the earliest offset, then the stage over its whole topic."""
    for stage in STAGE_NAMES:
        plan = replay.plan(settings, stage, replay.parse_start("earliest"))
        replay.apply(settings, plan)
        records = _topic_size(settings, settings.topic(topology.STAGES[stage].input_topic))
        stats = build_runner(settings, stage).run(max_messages=records, idle_timeout_s=15)
        assert stats.processed + stats.failed == records, (stage, records, stats)


# --- the test ------------------------------------------------------------------


def test_deleted_text_is_gone_from_every_topic_and_table_and_replay_rebuilds_the_rest(
    api: ApiServer,
) -> None:
    settings = api.settings
    engine = make_engine(settings)
    with api.client() as client:
        answer = upload(client, ("doomed.md", DOOMED), *LIVE.items())
        assert answer.status_code == 202, answer.text
        accepted = answer.json()["documents"]
        run_stages(settings, documents=3)
        doomed_id = accepted[0]["document_id"]
        for item in accepted:
            assert client.get(item["status_url"]).json()["status"] == "complete"

        # A dead letter of each document's first chunk, as the embed runner writes one:
        # the same value bytes, with its error headers.
        producer = EventProducer(settings)
        chunked = settings.topic(topology.CHUNKED)
        for msg in read_everything(settings)[chunked]:
            value = msg.value()
            if value and make_codec(settings).decode(value, ChunkCreated).chunk_index == 0:
                producer.send(
                    settings.topic(topology.dlq(topology.CHUNKED)),
                    (msg.key() or b"").decode(),
                    value,
                    headers=[("error_class", b"EmbedderUnavailable")],
                )
        producer.wait()

        # Before the delete the scans find the text: the sealed chunks open with the
        # document's key, and the tables hold it. So the scans can see what they look for.
        leaks, _, opened = kafka_leaks(settings, engine, DOOMED_MARKERS)
        assert opened > 0 and leaks and all("opens with a key" in leak for leak in leaks), leaks
        assert {m for m in DOOMED_MARKERS if any(m in leak for leak in leaks)} == set(
            DOOMED_MARKERS
        )
        assert len(database_leaks(engine, DOOMED_MARKERS)) >= 3
        live_before = live_state(engine)

        began = time.monotonic()
        deleted = client.delete(f"/v1/documents/{doomed_id}")
        assert deleted.status_code == 200, deleted.text
        db_left = database_leaks(engine, DOOMED_MARKERS)
        topics_left, records, _ = kafka_leaks(settings, engine, DOOMED_MARKERS)
        gone_after_s = time.monotonic() - began
    print(f"deleted text unreadable in every topic {gone_after_s:.2f}s after the delete was sent")
    assert not db_left, db_left
    assert not topics_left, topics_left
    assert records[settings.topic(topology.dlq(topology.CHUNKED))] == 3
    assert gone_after_s < 300  # the README's bound; in fact 0 s after the delete's commit

    # The live documents lost nothing: only the doomed document's rows went.
    after_delete = live_state(engine)
    assert [d for d in live_before["documents"] if str(d[0]) != doomed_id] == after_delete[
        "documents"
    ]
    live_chunks = [c for c in live_before["chunks"] if str(c[1]) != doomed_id]
    assert after_delete["chunks"] == live_chunks
    # Their text is still readable where it should be: in the tables, and in the topics
    # with their keys.
    assert len(database_leaks(engine, LIVE_MARKERS)) >= 2
    live_leaks, _, _ = kafka_leaks(settings, engine, LIVE_MARKERS)
    assert live_leaks and all("opens with a key" in leak for leak in live_leaks), live_leaks

    replay_every_stage(settings)

    rebuilt = live_state(engine)
    assert rebuilt["documents"] == after_delete["documents"]
    assert rebuilt["chunks"] == after_delete["chunks"]
    assert rebuilt["vectors"] == after_delete["vectors"]
    assert rebuilt["counts"] == after_delete["counts"]
    assert not database_leaks(engine, DOOMED_MARKERS)
    again, _, _ = kafka_leaks(settings, engine, DOOMED_MARKERS)
    assert not again, again
    engine.dispose()


def test_a_retired_version_takes_its_text_with_it(api: ApiServer) -> None:
    """A new version that completes replaces the old one: the old text goes like a delete's."""
    settings = api.settings
    engine = make_engine(settings)
    old_markers = ["tangerine observatory 6617", "Copper Lighthouse Ledger"]
    v1 = _document("Copper Lighthouse Ledger", ["The tangerine observatory 6617 hums."])
    v2 = _document("Copper Lighthouse Ledger, revised", ["A cobalt aqueduct 2290 sings."])
    with api.client() as client:
        first = upload(client, ("ledger.md", v1), external_id="wiki/ledger")
        assert first.status_code == 202, first.text
        run_stages(settings, documents=1)
        assert len(database_leaks(engine, old_markers)) >= 2
        second = upload(client, ("ledger.md", v2), external_id="wiki/ledger")
        assert second.status_code == 202, second.text
        v2_id = uuid.UUID(second.json()["documents"][0]["document_id"])
        for stage in ("parse", "chunk"):
            build_runner(settings, stage).run(max_messages=1, idle_timeout_s=20)
        with engine.connect() as conn:
            chunks = conn.execute(
                select(func.count())
                .select_from(ChunkBuffer)
                .where(ChunkBuffer.document_id == v2_id)
            ).scalar_one()
        for stage in ("embed", "finalize"):
            build_runner(settings, stage).run(max_messages=chunks, idle_timeout_s=20)
        assert client.get(f"/v1/documents/{v2_id}").json()["status"] == "complete"
        v1_id = first.json()["documents"][0]["document_id"]
        assert client.get(f"/v1/documents/{v1_id}").status_code == 404
    # The revised heading starts with the old one: look for the old body only there.
    assert not database_leaks(engine, old_markers[:1]), database_leaks(engine, old_markers[:1])
    leaks, _, opened = kafka_leaks(settings, engine, old_markers[:1])
    assert not leaks and opened > 0, leaks
    still, _, _ = kafka_leaks(settings, engine, ["cobalt aqueduct 2290"])
    assert still and all("opens with a key" in leak for leak in still), still
    engine.dispose()
