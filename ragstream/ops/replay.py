"""``ragstream replay``: move a stage's consumer group back (or forward) so it re-reads its topic.

Every stage writes with upserts keyed by deterministic ids, so re-reading
overwrites rows with the same values and re-emits the same events. Offsets of a
group can only be changed while it has no members (the broker refuses
otherwise, and a live member would commit over the reset), so replay names the
members it found and stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ragstream import topology
from ragstream.errors import RagstreamError
from ragstream.kafka import admin_client
from ragstream.ops import groups
from ragstream.ops.groups import Member, PartitionState
from ragstream.settings import Settings

EARLIEST = "earliest"
_PARTITION_OFFSETS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")


class BadReplayStart(RagstreamError):
    """``--from`` is neither ``earliest``, an ISO-8601 time, nor ``partition:offset,...``."""


class GroupHasMembers(RagstreamError):
    """The group's offsets cannot move while consumers are in it."""

    def __init__(self, group: str, stage: str, found: list[Member]) -> None:
        listed = "; ".join(m.describe() for m in found)
        super().__init__(
            f"consumer group {group} has {len(found)} active member(s): {listed}. "
            f"Stop every {stage} worker first: `ragstream down` for a local stack, or "
            f"`kubectl scale deployment/ragstream-{stage} --replicas=0` (pause its autoscaler "
            "first), then run the replay again and start the workers."
        )
        self.members = found


@dataclass(frozen=True)
class ReplayStart:
    """Where to restart: the first offset, a point in time, or explicit offsets."""

    earliest: bool = False
    at: datetime | None = None
    offsets: tuple[tuple[int, int], ...] = ()

    def describe(self) -> str:
        if self.earliest:
            return EARLIEST
        if self.at is not None:
            return self.at.isoformat()
        return ",".join(f"{p}:{o}" for p, o in self.offsets)


def parse_start(text: str) -> ReplayStart:
    """``earliest``, an ISO-8601 time (UTC when it has no zone), or ``p:o,p:o``."""
    value = text.strip()
    if value == EARLIEST:
        return ReplayStart(earliest=True)
    if _PARTITION_OFFSETS.match(value):
        pairs = [tuple(int(x) for x in item.split(":")) for item in value.split(",")]
        offsets = tuple(sorted((p, o) for p, o in pairs))
        if len({p for p, _ in offsets}) != len(offsets):
            raise BadReplayStart(f"--from {text!r} names a partition twice")
        return ReplayStart(offsets=offsets)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadReplayStart(
            f"--from {text!r}: expected 'earliest', an ISO-8601 time such as "
            "2025-01-31T12:00:00Z, or partition:offset pairs such as 0:120,1:98"
        ) from None
    return ReplayStart(at=at if at.tzinfo is not None else at.replace(tzinfo=UTC))


@dataclass(frozen=True)
class PartitionPlan:
    state: PartitionState
    new: int

    @property
    def partition(self) -> int:
        return self.state.partition

    @property
    def reprocess(self) -> int:
        """Messages already handled that the group will handle again."""
        return max(self.state.position - self.new, 0)

    @property
    def skip(self) -> int:
        """Messages the group would jump over without handling them."""
        return max(self.new - self.state.position, 0)


@dataclass(frozen=True)
class ReplayPlan:
    stage: str
    group: str
    topic: str
    start: ReplayStart
    partitions: tuple[PartitionPlan, ...]
    members: tuple[Member, ...]

    @property
    def reprocess(self) -> int:
        return sum(p.reprocess for p in self.partitions)


def stage_group(settings: Settings, stage: str) -> tuple[str, str]:
    """The consumer group and input topic of ``stage``."""
    try:
        spec = topology.STAGES[stage]
    except KeyError:
        raise BadReplayStart(
            f"unknown stage {stage!r}; one of {', '.join(topology.STAGE_NAMES)}"
        ) from None
    return settings.topic_prefix + spec.group_id, settings.topic(spec.input_topic)


def plan(settings: Settings, stage: str, start: ReplayStart) -> ReplayPlan:
    """What a replay would do, per partition; changes nothing."""
    group, topic = stage_group(settings, stage)
    admin = admin_client(settings)
    states = groups.group_state(admin, group, topic)
    by_partition = {s.partition: s for s in states}
    if start.earliest:
        new = {s.partition: s.low for s in states}
    elif start.at is not None:
        ends = {s.partition: s.high for s in states}
        new = groups.offsets_at(settings, topic, ends, int(start.at.timestamp() * 1000))
    else:
        unknown = sorted({p for p, _ in start.offsets} - set(by_partition))
        if unknown:
            raise BadReplayStart(
                f"{topic} has partitions {sorted(by_partition)}; no partition {unknown[0]}"
            )
        for p, o in start.offsets:
            s = by_partition[p]
            if not s.low <= o <= s.high:
                raise BadReplayStart(
                    f"offset {o} is outside partition {p} of {topic} (from {s.low} to {s.high})"
                )
        new = {s.partition: s.position for s in states} | dict(start.offsets)
    return ReplayPlan(
        stage=stage,
        group=group,
        topic=topic,
        start=start,
        partitions=tuple(PartitionPlan(s, new[s.partition]) for s in states),
        members=tuple(groups.members(admin, group)),
    )


def apply(settings: Settings, replay: ReplayPlan) -> None:
    """Commit the plan's offsets; refuses while the group has members (checked again now)."""
    admin = admin_client(settings)
    live = groups.members(admin, replay.group)
    if live:
        raise GroupHasMembers(replay.group, replay.stage, live)
    offsets = {p.partition: p.new for p in replay.partitions}
    groups.set_offsets(admin, replay.group, replay.topic, offsets)
