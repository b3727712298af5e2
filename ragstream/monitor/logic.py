"""What the monitor decides, as pure functions of what it has seen: no Kafka, no SQL, no faust.

A document's *timeline* is a small JSON-able dict, kept in a faust table keyed by
document id (so it survives a restart through the table's changelog). Each event
seen on a stage topic closes the previous stage and opens the next one:

* ``DocumentUploaded``: the document waits for parse;
* ``DocumentParsed``: parse is done, it waits for chunk;
* ``ChunkCreated``: chunk is done, it waits for embed;
* ``ChunkEmbedded``: once every chunk has a vector, embed is done and it waits
  for finalize, whose end (``complete``) only the database knows.

Times in a timeline are epoch milliseconds. Every stage-closing time is checked
against what cannot be: a date in the future, a stage that finished before its
input existed or before the upload, or faster than any machine could for the
document's size.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from ragstream import ids, topology
from ragstream.deadletter import DeadLetter
from ragstream.schemas.events import (
    ChunkCreated,
    ChunkEmbedded,
    DocumentParsed,
    DocumentUploaded,
    Event,
)
from ragstream.settings import Settings

Timeline = dict[str, Any]
STAGE_ORDER = topology.STAGE_NAMES


class AlertKind(StrEnum):
    SLA_EXCEEDED = "sla_exceeded"
    IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"
    DLQ_MESSAGE = "dlq_message"
    STAGE_STALLED = "stage_stalled"
    CONSUMER_STALLED = "consumer_stalled"
    DEPENDENCY_DOWN = "dependency_down"  # raised by the stage workers themselves


ONE_OFF_KINDS = frozenset({AlertKind.IMPOSSIBLE_TIMESTAMP, AlertKind.DLQ_MESSAGE})
"""Alerts about something that happened once; they close after ``event_alert_open_s``."""


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    message: str
    stage: str | None = None
    document_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    discriminator: str = ""  # tells apart two alerts of one kind about the same subject

    @property
    def id(self) -> uuid.UUID:
        """The same condition keeps the same id, so raising it again only counts it."""
        parts = (self.kind.value, self.stage or "", self.document_id or "", self.discriminator)
        return uuid.uuid5(ids.NAMESPACE, "alert:" + "\x1f".join(parts))


@dataclass(frozen=True)
class Limits:
    sla_s: Mapping[str, float]
    stall_after_s: float
    clock_skew_s: float
    max_bytes_per_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            sla_s={
                "parse": settings.sla_parse_s,
                "chunk": settings.sla_chunk_s,
                "embed": settings.sla_embed_s,
                "finalize": settings.sla_finalize_s,
            },
            stall_after_s=settings.stall_after_s,
            clock_skew_s=settings.clock_skew_s,
            max_bytes_per_s=settings.max_plausible_bytes_per_s,
        )


@dataclass(frozen=True)
class Seen:
    """Where a record was read; what a waiting document's queue position is computed from."""

    partition: int
    offset: int


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def iso(epoch_ms: float | None) -> str:
    if epoch_ms is None:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


# --- timelines --------------------------------------------------------------------------


def new_timeline(document_id: str) -> Timeline:
    return {"document_id": document_id, "stages": {}, "embedded": [], "failed": None}


def waiting_stage(tl: Timeline) -> str | None:
    """The stage the document is in now (queued or being worked on), if any."""
    if tl.get("failed"):
        return None
    stages: dict[str, dict[str, Any]] = tl["stages"]
    current = None
    for name in STAGE_ORDER:
        entry = stages.get(name)
        if entry is not None and entry.get("done") is None:
            current = name
    return current


def _enter(tl: Timeline, stage: str, since_ms: int, seen: Seen) -> None:
    entry = tl["stages"].setdefault(stage, {})
    if "since" not in entry:
        entry.update(since=since_ms, partition=seen.partition, offset=seen.offset)


def _close(tl: Timeline, stage: str, done_ms: int) -> None:
    entry = tl["stages"].setdefault(stage, {})
    entry.setdefault("since", done_ms)
    if entry.get("done") is None:
        entry["done"] = done_ms


def observe(
    tl: Timeline | None, event: Event, seen: Seen, now: datetime, limits: Limits
) -> tuple[Timeline, list[Alert]]:
    """Fold one stage-topic event into the document's timeline; alerts for what cannot be."""
    document_id = str(getattr(event, "document_id", ""))
    tl = dict(tl) if tl is not None else new_timeline(document_id)
    tl["stages"] = {k: dict(v) for k, v in tl["stages"].items()}
    alerts: list[Alert] = []
    now_ms = ms(now)
    if isinstance(event, DocumentUploaded):
        tl["size_bytes"] = event.size_bytes
        tl["uploaded_at"] = ms(event.uploaded_at)
        tl["upload_emitted_at"] = ms(event.emitted_at)
        alerts += _future(document_id, "parse", "uploaded_at", tl["uploaded_at"], now_ms, limits)
        _enter(tl, "parse", tl["uploaded_at"], seen)
    elif isinstance(event, DocumentParsed):
        done = ms(event.parsed_at)
        alerts += _impossible_finish(tl, "parse", "parsed_at", done, now_ms, limits)
        _close(tl, "parse", done)
        tl["parsed_emitted_at"] = ms(event.emitted_at)
        _enter(tl, "chunk", done, seen)
    elif isinstance(event, ChunkCreated):
        done = ms(event.created_at)
        tl["chunk_count"] = event.chunk_count
        if tl["stages"].get("chunk", {}).get("done") is None:
            alerts += _impossible_finish(tl, "chunk", "created_at", done, now_ms, limits)
            _close(tl, "chunk", done)
            _enter(tl, "embed", done, seen)
    elif isinstance(event, ChunkEmbedded):
        done = ms(event.embedded_at)
        tl["chunk_count"] = event.chunk_count
        embedded = set(tl.get("embedded", []))
        if event.chunk_index not in embedded:
            alerts += _impossible_finish(tl, "embed", "embedded_at", done, now_ms, limits)
            embedded.add(event.chunk_index)
            tl["embedded"] = sorted(embedded)
            tl["embedded_last"] = max(done, tl.get("embedded_last", 0))
        if len(embedded) >= event.chunk_count and tl["stages"].get("embed", {}).get("done") is None:
            _close(tl, "embed", tl["embedded_last"])
            _enter(tl, "finalize", tl["embedded_last"], seen)
    return tl, alerts


def observe_dead_letter(
    tl: Timeline | None, headers: Mapping[str, bytes], seen: Seen, topic: str
) -> tuple[Timeline | None, Alert]:
    """A DLQ record: the document failed in a stage; always an alert."""
    letter = DeadLetter.from_headers(headers)
    stage = letter.stage
    document_id = str(letter.document_id) if letter.document_id else None
    error_class = letter.error_class or "unknown"
    where = f"{letter.origin_topic or '?'}@{_unknown(letter.origin_offset)}"
    alert = Alert(
        AlertKind.DLQ_MESSAGE,
        f"{stage or 'a stage'} dead-lettered a message ({error_class}): "
        f"{letter.error_message[:300]}",
        stage=stage,
        document_id=document_id,
        details={
            "dlq_topic": topic,
            "dlq_partition": str(seen.partition),
            "dlq_offset": str(seen.offset),
            "origin": where,
            "error_class": error_class,
        },
        discriminator=f"{topic}:{seen.partition}:{seen.offset}",
    )
    if tl is not None:
        tl = dict(tl)
        tl["failed"] = stage or "unknown"
    return tl, alert


def _unknown(value: int | None) -> str:
    return "?" if value is None else str(value)


def _future(
    document_id: str, stage: str, name: str, value_ms: int, now_ms: int, limits: Limits
) -> list[Alert]:
    if value_ms <= now_ms + limits.clock_skew_s * 1000:
        return []
    return [
        _timestamp_alert(
            document_id,
            stage,
            f"{name} {iso(value_ms)} is in the future (now {iso(now_ms)})",
            {name: iso(value_ms), "now": iso(now_ms)},
            f"future:{name}",
        )
    ]


def _impossible_finish(
    tl: Timeline, stage: str, name: str, done_ms: int, now_ms: int, limits: Limits
) -> list[Alert]:
    """``stage`` finished at ``done_ms``: before it could start, or faster than physics."""
    document_id = str(tl["document_id"])
    alerts = _future(document_id, stage, name, done_ms, now_ms, limits)
    skew_ms = limits.clock_skew_s * 1000
    uploaded = tl.get("uploaded_at")
    started = tl["stages"].get(stage, {}).get("since")
    if uploaded is not None and done_ms < uploaded - skew_ms:
        alerts.append(
            _timestamp_alert(
                document_id,
                stage,
                f"{stage} finished at {iso(done_ms)}, before the upload at {iso(uploaded)}",
                {name: iso(done_ms), "uploaded_at": iso(uploaded)},
                f"before-upload:{name}",
            )
        )
    elif started is not None and done_ms < started - skew_ms:
        alerts.append(
            _timestamp_alert(
                document_id,
                stage,
                f"{stage} finished at {iso(done_ms)}, before it started at {iso(started)}",
                {name: iso(done_ms), "started_at": iso(started)},
                f"before-start:{name}",
            )
        )
    size = tl.get("size_bytes")
    if stage == "parse" and uploaded is not None and size and done_ms >= uploaded:
        fastest_ms = size / limits.max_bytes_per_s * 1000
        took_ms = done_ms - uploaded
        if took_ms < fastest_ms:
            alerts.append(
                _timestamp_alert(
                    document_id,
                    stage,
                    f"parse of {size} bytes took {took_ms} ms; no parser is faster than "
                    f"{fastest_ms:.0f} ms for that size",
                    {"size_bytes": str(size), "took_ms": str(took_ms)},
                    "too-fast:parse",
                )
            )
    return alerts


def _timestamp_alert(
    document_id: str, stage: str, message: str, details: dict[str, str], discriminator: str
) -> Alert:
    return Alert(
        AlertKind.IMPOSSIBLE_TIMESTAMP,
        f"impossible timestamp: {message}",
        stage=stage,
        document_id=document_id,
        details=details,
        discriminator=discriminator,
    )


# --- the watchdog ----------------------------------------------------------------------


@dataclass(frozen=True)
class Overdue:
    document_id: str
    stage: str
    since_ms: int
    waited_s: float


def overdue(timelines: Iterable[Timeline], now: datetime, limits: Limits) -> list[Overdue]:
    """Documents that have been in their current stage longer than its SLA."""
    now_ms = ms(now)
    found = []
    for tl in timelines:
        stage = waiting_stage(tl)
        if stage is None:
            continue
        since = int(tl["stages"][stage]["since"])
        waited = (now_ms - since) / 1000
        if waited > limits.sla_s[stage]:
            found.append(Overdue(str(tl["document_id"]), stage, since, waited))
    return found


def sla_alert(item: Overdue, limits: Limits) -> Alert:
    return Alert(
        AlertKind.SLA_EXCEEDED,
        f"document has been in {item.stage} for {item.waited_s:.0f}s "
        f"(SLA {limits.sla_s[item.stage]:.0f}s)",
        stage=item.stage,
        document_id=item.document_id,
        details={"since": iso(item.since_ms), "waited_s": f"{item.waited_s:.0f}"},
    )


class StageState(StrEnum):
    IDLE = "idle"  # nothing waits
    FLOWING = "flowing"  # messages wait and the group makes progress: documents are queued
    STALLED = "stalled"  # messages wait and nothing moves: no workers, or workers silent


@dataclass(frozen=True)
class GroupProbe:
    """One look at a stage's consumer group: members and, per partition, committed and end."""

    members: int
    committed: Mapping[int, int]
    end: Mapping[int, int]
    start: Mapping[int, int] = field(default_factory=dict)
    assignments: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # member -> partitions

    @property
    def lag_by_partition(self) -> dict[int, int]:
        lag = {}
        for partition, end in self.end.items():
            position = self.committed.get(partition, -1)
            if position < 0:
                position = self.start.get(partition, 0)
            lag[partition] = max(end - position, 0)
        return lag

    @property
    def lag(self) -> int:
        return sum(self.lag_by_partition.values())

    @property
    def committed_total(self) -> int:
        return sum(max(c, 0) for c in self.committed.values())


@dataclass
class MinuteCounts:
    """Events counted per wall-clock minute: a rate is the last complete minute's count."""

    counts: dict[int, int] = field(default_factory=dict)

    def add(self, at: datetime, n: int = 1) -> None:
        minute = int(at.timestamp() // 60)
        self.counts[minute] = self.counts.get(minute, 0) + n

    def last_minute(self, now: datetime) -> int:
        """The count of the minute before this one (0 when nothing came); forgets older ones."""
        minute = int(now.timestamp() // 60) - 1
        for old in [m for m in self.counts if m < minute]:
            del self.counts[old]
        return self.counts.get(minute, 0)


@dataclass
class StageTracker:
    """What the watchdog remembers of a stage between two looks."""

    stage: str
    last_progress_at: datetime
    committed_total: int = -1
    done: MinuteCounts = field(default_factory=MinuteCounts)
    # member -> (its partitions' committed total, their lag, when it last made progress)
    consumers: dict[str, tuple[int, int, datetime]] = field(default_factory=dict)

    def update(self, probe: GroupProbe, now: datetime) -> float:
        """Record a look; the messages committed in the last complete minute."""
        total = probe.committed_total
        if probe.lag == 0 or 0 <= self.committed_total < total:
            self.last_progress_at = now
        if 0 <= self.committed_total < total:
            self.done.add(now, total - self.committed_total)
        self.committed_total = total
        return float(self.done.last_minute(now))


@dataclass(frozen=True)
class StageHealth:
    stage: str
    state: StageState
    reason: str
    lag: int
    members: int
    processed_per_min: float
    last_progress_at: datetime


def stage_health(
    tracker: StageTracker, probe: GroupProbe, now: datetime, limits: Limits
) -> StageHealth:
    """Queued or stalled: lag with progress is a queue; lag without progress is a stall."""
    rate = tracker.update(probe, now)
    lag = probe.lag
    quiet_s = (now - tracker.last_progress_at).total_seconds()
    if lag == 0:
        state, reason = StageState.IDLE, "nothing waiting"
    elif quiet_s < limits.stall_after_s:
        state, reason = StageState.FLOWING, f"{lag} message(s) queued, {probe.members} worker(s)"
    elif probe.members == 0:
        state = StageState.STALLED
        reason = f"{lag} message(s) waiting and no worker in the group for {quiet_s:.0f}s"
    else:
        state = StageState.STALLED
        reason = (
            f"{lag} message(s) waiting, {probe.members} worker(s) in the group but no "
            f"progress for {quiet_s:.0f}s (stopped or hung)"
        )
    return StageHealth(
        tracker.stage, state, reason, lag, probe.members, rate, tracker.last_progress_at
    )


def stalled_alert(health: StageHealth) -> Alert:
    return Alert(
        AlertKind.STAGE_STALLED,
        f"stage stalled: {health.stage}: {health.reason}",
        stage=health.stage,
        details={
            "lag": str(health.lag),
            "members": str(health.members),
            "last_progress_at": health.last_progress_at.isoformat(timespec="seconds"),
        },
    )


def stalled_consumers(
    tracker: StageTracker, probe: GroupProbe, now: datetime, limits: Limits
) -> list[Alert]:
    """Members that hold partitions whose lag grew while their committed offsets did not move.

    The stage as a whole may still flow (the other members work): only this
    member's partitions are stuck, behind a worker that is alive enough to keep them.
    """
    lag = probe.lag_by_partition
    seen: dict[str, tuple[int, int, datetime]] = {}
    alerts = []
    for member, partitions in probe.assignments.items():
        if not partitions:
            continue
        done = sum(max(probe.committed.get(p, -1), 0) for p in partitions)
        behind = sum(lag.get(p, 0) for p in partitions)
        before = tracker.consumers.get(member)
        if before is None or behind == 0 or done > before[0]:
            seen[member] = (done, behind, now)
            continue
        since = before[2]
        seen[member] = (before[0], before[1], since)
        quiet_s = (now - since).total_seconds()
        if quiet_s >= limits.stall_after_s and behind > before[1]:
            alerts.append(
                Alert(
                    AlertKind.CONSUMER_STALLED,
                    f"consumer stalled: {tracker.stage}: {member} holds partition(s) "
                    f"{','.join(map(str, partitions))} and committed nothing for {quiet_s:.0f}s "
                    f"while their lag grew from {before[1]} to {behind}",
                    stage=tracker.stage,
                    details={
                        "member": member,
                        "partitions": ",".join(map(str, partitions)),
                        "lag": str(behind),
                        "last_progress_at": since.isoformat(timespec="seconds"),
                    },
                    discriminator=member,
                )
            )
    tracker.consumers = seen
    return alerts


# --- where a waiting document is ---------------------------------------------------------


@dataclass(frozen=True)
class WaitState:
    """What the job status API shows for a document that is not finished."""

    state: str  # queued | stalled | unknown
    stage: str
    position: int | None
    estimate_s: float | None
    reason: str
    since: datetime | None = None  # stalled: the stage's last progress; else when it entered
    seen: Mapping[str, Any] = field(default_factory=dict)  # the monitor's last look at the stage

    @property
    def estimated_start(self) -> datetime | None:
        """When the document should start, at the stage's current throughput."""
        if self.estimate_s is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.estimate_s)

    def as_dict(self) -> dict[str, Any]:
        start = self.estimated_start
        return {
            "state": self.state,
            "stage": self.stage,
            "position": self.position,
            "estimate_s": None if self.estimate_s is None else round(self.estimate_s, 1),
            "estimated_start": start.isoformat(timespec="seconds") if start else None,
            "reason": self.reason,
            "since": self.since.isoformat(timespec="seconds") if self.since else None,
            "seen": dict(self.seen),
        }


def wait_state(
    stage: str,
    partition: int | None,
    offset: int | None,
    stage_state: str | None,
    stage_reason: str | None,
    committed: Mapping[str, int] | None,
    processed_per_min: float,
    *,
    entered: datetime | None = None,
    last_progress: datetime | None = None,
    seen: Mapping[str, Any] | None = None,
) -> WaitState:
    """Queued (position and estimate) or stalled (since when, why), from the monitor's last look.

    The position counts the records ahead of the document in its partition (its offset minus
    the group's committed offset); the estimate spreads the stage's measured rate evenly over
    its partitions.
    """
    look = dict(seen or {})
    if stage_state is None:
        return WaitState(
            "unknown", stage, None, None, "the monitor has not looked at this stage", entered, look
        )
    position = None
    if partition is not None and offset is not None and committed is not None:
        done = committed.get(str(partition), -1)
        position = max(offset - max(done, 0), 0)
    if stage_state == StageState.STALLED:
        return WaitState(
            "stalled",
            stage,
            position,
            None,
            stage_reason or "stage stalled",
            last_progress or entered,
            look,
        )
    estimate = None
    partitions = max(len(committed or {}), 1)
    if position is not None and processed_per_min > 0:
        estimate = position / (processed_per_min / 60 / partitions)
    return WaitState("queued", stage, position, estimate, stage_reason or "", entered, look)
