"""Kafka client configuration and topic administration, in one place.

The settings here are the ones that make at-least-once hold (README, "Never
lost"): idempotent producers with acks=all, consumers that store offsets by
hand after the work is durable, cooperative-sticky assignment.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ragstream import topology
from ragstream.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Every producer's: a write counts once every in-sync replica has it (``acks=all``, and
    topics refuse it below ``min.insync.replicas``), retried without duplicates."""
    return {
        "bootstrap.servers": settings.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "zstd",
        "message.max.bytes": 16 * 1024 * 1024,
        "delivery.timeout.ms": 120_000,
        **overrides,
    }


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap,
        "group.id": group_id,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": settings.max_poll_interval_s * 1000,
        "session.timeout.ms": settings.session_timeout_s * 1000,
        "fetch.max.bytes": 32 * 1024 * 1024,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "fetch.error.backoff.ms": 50,
        "fetch.queue.backoff.ms": 50,
        **overrides,
    }


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap})


def create_topics(settings: Settings, topics: list[str] | None = None) -> list[str]:
    """Declare every topic (stage topics and their DLQs); existing ones are left alone."""
    names = [settings.topic(t) for t in (topics or topology.all_topics())]
    admin = admin_client(settings)
    new = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={
                **topology.TOPIC_CONFIG,
                "min.insync.replicas": str(settings.min_insync_replicas),
            },
        )
        for name in names
    ]
    created = []
    for name, future in admin.create_topics(new, request_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
