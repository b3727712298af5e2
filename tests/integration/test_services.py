"""The fixtures are real: a Kafka broker that stores offsets, a PostgreSQL that upserts."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.dialects.postgresql import insert

from ragstream.db import migrate, vectors
from ragstream.db.models import Blob
from ragstream.kafka import consumer_config, create_topics
from ragstream.producers.producer import EventProducer
from ragstream.settings import Settings

pytestmark = pytest.mark.integration


def test_produce_consume_and_committed_offset_read_back(settings: Settings) -> None:
    topic = settings.topic("roundtrip")
    create_topics(settings, ["roundtrip"])
    producer = EventProducer(settings)
    for i in range(5):
        producer.send(topic, key=f"k{i % 2}", value=f"v{i}".encode())
    producer.wait()

    group = f"{settings.topic_prefix}roundtrip"
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([topic])
    seen: list[bytes] = []
    while len(seen) < 5:
        msg = consumer.poll(10)
        assert msg is not None, "broker delivered fewer messages than produced"
        assert msg.error() is None
        seen.append(msg.value())
        consumer.store_offsets(msg)
    consumer.commit(asynchronous=False)
    partitions = consumer.assignment()
    consumer.close()

    assert sorted(seen) == [f"v{i}".encode() for i in range(5)]
    reader = Consumer(consumer_config(settings, group))
    committed = reader.committed([TopicPartition(topic, p.partition) for p in partitions], 10)
    reader.close()
    # The committed offset of each partition is one past the last message read there.
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == 5


def test_upsert_of_the_same_id_twice_leaves_one_row(settings: Settings) -> None:
    engine = create_engine(settings.db_url)
    sha = uuid.uuid4().hex * 2
    for content in (b"first", b"second"):
        stmt = insert(Blob).values(sha256=sha, size_bytes=len(content), content=content)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Blob.sha256], set_={"content": stmt.excluded.content}
        )
        with engine.begin() as conn:
            conn.execute(stmt)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Blob)).scalar_one() == 1
        assert conn.execute(select(Blob.content)).scalar_one() == b"second"
    engine.dispose()


def test_migration_up_down_up(settings: Settings) -> None:
    engine = create_engine(settings.db_url)
    head = migrate.head_revision(settings.db_url)
    assert head is not None and "," not in head, f"unmerged migration heads: {head}"
    assert migrate.current_revision(engine) == head
    migrate.downgrade(settings.db_url, "base")
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tablename = 'documents'")
        ).scalar_one()
    assert tables == 0
    with pytest.raises(Exception, match="ragstream migrate"):
        migrate.require_head(engine)
    migrate.upgrade(settings.db_url)
    migrate.require_head(engine)
    with engine.begin() as conn:
        name = vectors.ensure_index(conn, "hash-768", 768)
        index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}
        ).scalar_one()
    assert "hnsw" in index and "vector_cosine_ops" in index, index
    assert "vector(768)" in index and "'hash-768'" in index, index
    engine.dispose()


def test_postgres_has_pgvector(database_url: str) -> None:
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname='vector'"
        ).fetchone()
        distance = conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()
    assert version is not None
    assert distance is not None and distance[0] == pytest.approx(1.0)


def test_upsert_of_more_rows_than_one_statement_can_bind(settings: Settings) -> None:
    """A document with thousands of chunks: more bind parameters than PostgreSQL's 65535."""
    from ragstream.db.repository import upsert

    engine = create_engine(settings.db_url)
    rows = [
        {"sha256": f"{i:064x}", "size_bytes": 1, "content": b"x"} for i in range(30_000)
    ]  # 90,000 parameters
    with engine.begin() as conn:
        assert upsert(conn, Blob, rows) == 30_000
        assert upsert(conn, Blob, rows) == 30_000  # again: overwrites, adds nothing
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Blob)).scalar_one() == 30_000
    engine.dispose()
