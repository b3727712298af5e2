"""A consumer group seen from outside: its members, committed offsets and the topic's ends.

Replay, re-embedding and the DLQ tools all need the same three facts per
partition (first offset, end offset, where the group stands), read with the
AdminClient so that looking never joins the group.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from ragstream.errors import RagstreamError
from ragstream.kafka import consumer_config
from ragstream.settings import Settings

TIMEOUT_S = 30.0


class TopicMissing(RagstreamError):
    """The topic does not exist (yet); ``ragstream topics create`` declares it."""


@dataclass(frozen=True)
class Member:
    """One live consumer of a group, as the group coordinator knows it."""

    member_id: str
    client_id: str
    host: str
    instance_id: str | None
    partitions: tuple[int, ...]

    def describe(self) -> str:
        owned = ",".join(str(p) for p in self.partitions) or "none"
        static = f", instance {self.instance_id}" if self.instance_id else ""
        return f"client {self.client_id} on {self.host.lstrip('/')} (partitions {owned}{static})"


@dataclass(frozen=True)
class PartitionState:
    """Where a group stands on one partition; ``committed`` is None when it has no offset."""

    partition: int
    low: int
    high: int
    committed: int | None
    metadata: str = ""

    @property
    def position(self) -> int:
        """Where the group resumes: its offset, or the first one (auto.offset.reset=earliest)."""
        if self.committed is None:
            return self.low
        return min(max(self.committed, self.low), self.high)

    @property
    def lag(self) -> int:
        return self.high - self.position


def partitions(admin: AdminClient, topic: str) -> list[int]:
    metadata = admin.list_topics(topic, timeout=TIMEOUT_S)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise TopicMissing(f"topic {topic} does not exist; run `ragstream topics create`")
    return sorted(found.partitions)


def members(admin: AdminClient, group: str) -> list[Member]:
    """The group's live members; empty for an unknown or empty group."""
    future = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group]
    try:
        description = future.result()
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return []
        raise
    return [
        Member(
            member_id=m.member_id,
            client_id=m.client_id,
            host=m.host,
            instance_id=m.group_instance_id,
            partitions=tuple(
                sorted(
                    tp.partition for tp in (m.assignment.topic_partitions if m.assignment else [])
                )
            ),
        )
        for m in description.members
    ]


def watermarks(admin: AdminClient, topic: str, parts: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(first, end) offset of each partition."""
    parts = list(parts)
    earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    low = _list_offsets(admin, {TopicPartition(topic, p): earliest for p in parts})
    high = _list_offsets(admin, {TopicPartition(topic, p): latest for p in parts})
    return {p: (low[p], high[p]) for p in parts}


def offsets_at(
    settings: Settings, topic: str, ends: dict[int, int], when_ms: int
) -> dict[int, int]:
    """Per partition, the first offset stamped at or after ``when_ms``; its end when none is."""
    consumer = Consumer(consumer_config(settings, f"{settings.topic_prefix}ragstream-ops-probe"))
    try:
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, when_ms) for p in sorted(ends)], timeout=TIMEOUT_S
        )
    finally:
        consumer.close()
    out: dict[int, int] = {}
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition]
    return out


def _list_offsets(admin: AdminClient, request: dict[Any, Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    for tp, future in admin.list_offsets(request, request_timeout=TIMEOUT_S).items():
        out[tp.partition] = int(future.result().offset)
    return out


def committed(
    admin: AdminClient, group: str, topic: str, parts: Iterable[int]
) -> dict[int, tuple[int | None, str]]:
    """The group's committed offset and commit metadata per partition (None: no offset)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    result = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT_S)
    out: dict[int, tuple[int | None, str]] = {}
    for tp in result[group].result().topic_partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[tp.partition] = (tp.offset if tp.offset >= 0 else None, tp.metadata or "")
    return out


def group_state(admin: AdminClient, group: str, topic: str) -> list[PartitionState]:
    parts = partitions(admin, topic)
    ends = watermarks(admin, topic, parts)
    at = committed(admin, group, topic, parts)
    return [PartitionState(p, ends[p][0], ends[p][1], at[p][0], at[p][1]) for p in parts]


def set_offsets(admin: AdminClient, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for a group that has no members (the broker refuses otherwise)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
    )
    result = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT_S)
    for tp in result[group].result().topic_partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
