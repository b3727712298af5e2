"""Looking at the stage consumer groups from outside, with the Kafka AdminClient.

Membership tells whether a stage has workers; committed offsets moving tells
whether they make progress. A SIGKILLed worker leaves the group after its
session timeout; a SIGSTOPped one stays a member for that long but commits
nothing, so progress, not membership alone, is what tells a stall.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from ragstream import topology
from ragstream.errors import DependencyUnavailable
from ragstream.kafka import admin_client
from ragstream.monitor.logic import GroupProbe
from ragstream.settings import Settings

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Look:
    """One look at every stage: its group, and how many records its DLQ holds."""

    groups: dict[str, GroupProbe]
    dlq_messages: dict[str, int]


class GroupProber:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = admin_client(settings)

    def _partitions(self, topic: str) -> list[int]:
        metadata = self.admin.list_topics(topic, timeout=TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def look(self) -> Look:
        try:
            return self._look()
        except KafkaException as exc:
            raise DependencyUnavailable(f"cannot look at the consumer groups: {exc}") from exc

    def _look(self) -> Look:
        s = self.settings
        specs = list(topology.STAGES.values())
        groups = {spec.name: s.topic_prefix + spec.group_id for spec in specs}
        inputs = {spec.name: s.topic(spec.input_topic) for spec in specs}
        dlqs = {spec.name: s.topic(topology.dlq(spec.input_topic)) for spec in specs}
        parts = {topic: self._partitions(topic) for topic in [*inputs.values(), *dlqs.values()]}
        ends = self._offsets(parts, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        starts = self._offsets(parts, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        described = dict(
            zip(
                groups,
                (
                    f.result(timeout=TIMEOUT_S)
                    for f in self.admin.describe_consumer_groups(
                        list(groups.values()), request_timeout=TIMEOUT_S
                    ).values()
                ),
                strict=True,
            )
        )
        members = {name: len(d.members) for name, d in described.items()}
        # Which partitions of its stage's input topic each member holds (member id -> partitions).
        assignments = {
            name: {
                f"{m.client_id}@{m.host}/{m.member_id[-8:]}": tuple(
                    sorted(
                        tp.partition
                        for tp in (m.assignment.topic_partitions if m.assignment else [])
                        if tp.topic == inputs[name]
                    )
                )
                for m in d.members
            }
            for name, d in described.items()
        }
        probes: dict[str, GroupProbe] = {}
        for name, group in groups.items():
            topic = inputs[name]
            committed: dict[int, int] = {}
            if parts[topic]:
                request = ConsumerGroupTopicPartitions(
                    group, [TopicPartition(topic, p) for p in parts[topic]]
                )
                (future,) = self.admin.list_consumer_group_offsets(
                    [request], request_timeout=TIMEOUT_S
                ).values()
                for tp in future.result(timeout=TIMEOUT_S).topic_partitions:
                    committed[tp.partition] = tp.offset
            probes[name] = GroupProbe(
                members=members[name],
                committed=committed,
                end={p: ends[(topic, p)] for p in parts[topic]},
                start={p: starts[(topic, p)] for p in parts[topic]},
                assignments=assignments[name],
            )
        dlq_counts = {
            name: sum(ends[(topic, p)] - starts[(topic, p)] for p in parts[topic])
            for name, topic in dlqs.items()
        }
        return Look(probes, dlq_counts)

    def _offsets(self, parts: dict[str, list[int]], spec: OffsetSpec) -> dict[tuple[str, int], int]:
        request = {TopicPartition(t, p): spec for t, ps in parts.items() for p in ps}
        if not request:
            return {}
        futures = self.admin.list_offsets(request, request_timeout=TIMEOUT_S)
        return {
            (tp.topic, tp.partition): int(f.result(timeout=TIMEOUT_S).offset)
            for tp, f in futures.items()
        }
