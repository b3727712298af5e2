"""The native devstack: real Kafka (KRaft) and PostgreSQL, and data that survives restarts."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from sqlalchemy import create_engine, text

from ragstream.devstack import Devstack
from ragstream.kafka import consumer_config, create_topics
from ragstream.producers.producer import EventProducer
from ragstream.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """Outside pytest's own temp root: pytest resets that root to mode 0700, which would
    lock out the server's system user when tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="ragstream-devstack-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_devstack_restart_keeps_topics_and_rows(stack_dir: Path) -> None:
    base = Settings(data_dir=stack_dir, partitions=1)
    stack = Devstack(base)
    addresses = stack.up()
    settings = base.model_copy(
        update={
            "kafka_bootstrap": addresses.kafka_bootstrap,
            "database_url": addresses.database_url,
        }
    )
    try:
        status = stack.status()
        assert status["kafka"]["healthy"] and status["postgres"]["healthy"]
        assert status["kafka"]["version"].startswith("Apache Kafka 4.")
        assert status["kafka"]["mode"].startswith("KRaft")
        assert status["postgres"]["version"].startswith("PostgreSQL 18")
        assert status["postgres"]["pgvector"]

        create_topics(settings, ["survivor"])
        producer = EventProducer(settings)
        producer.send(settings.topic("survivor"), key="k", value=b"kept")
        producer.wait()
        engine = create_engine(settings.db_url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (v text)"))
            conn.execute(text("INSERT INTO kept VALUES ('row')"))
        engine.dispose()

        stack.down()
        assert not stack.status()["kafka"]["healthy"]
        again = stack.up()
        assert again == addresses  # same addresses after a restart

        consumer = Consumer(consumer_config(settings, "survivor-check"))
        consumer.subscribe([settings.topic("survivor")])
        msg = consumer.poll(15)
        consumer.close()
        assert msg is not None and msg.value() == b"kept"
        engine = create_engine(settings.db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT v FROM kept")).scalar_one() == "row"
        engine.dispose()

        stack.kafka.kill()  # a crash, not a clean stop: the broker recovers its log
        stack.up()
        assert stack.status()["kafka"]["healthy"]
    finally:
        stack.down()
