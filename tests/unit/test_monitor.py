"""The monitor's decisions, and its faust agents driven through faust's test context."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ragstream.monitor.logic import (
    Alert,
    AlertKind,
    GroupProbe,
    Limits,
    Seen,
    StageState,
    StageTracker,
    observe,
    observe_dead_letter,
    overdue,
    stage_health,
    stalled_consumers,
    wait_state,
    waiting_stage,
)
from ragstream.schemas.codec import SingleObjectCodec
from ragstream.schemas.events import (
    ChunkCreated,
    ChunkEmbedded,
    DocumentParsed,
    DocumentUploaded,
    utc_now,
)
from ragstream.settings import Settings
from tests.events import document_parsed

LIMITS = Limits(
    sla_s={"parse": 60, "chunk": 60, "embed": 60, "finalize": 60},
    stall_after_s=30,
    clock_skew_s=5,
    max_bytes_per_s=1e6,
)
DOC = str(uuid.uuid4())
JOB = str(uuid.uuid4())
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def uploaded(at: datetime = T0, size: int = 1000) -> DocumentUploaded:
    return DocumentUploaded(
        document_id=DOC,
        job_id=JOB,
        tenant="t",
        blob_sha256="a" * 64,
        blob_uri="blob://a",
        size_bytes=size,
        uploaded_at=at,
        emitted_at=at,
    )


def parsed(at: datetime) -> DocumentParsed:
    return document_parsed(DOC, JOB, at, emitted_at=at)


def chunk(at: datetime, index: int = 0, count: int = 2) -> ChunkCreated:
    return ChunkCreated(
        chunk_id=str(uuid.uuid4()),
        document_id=DOC,
        job_id=JOB,
        tenant="t",
        chunk_index=index,
        chunk_count=count,
        text="x",
        token_count=1,
        pages=(),
        heading_path=(),
        chunker_version="1",
        chunker_config_hash="h",
        parser="text",
        parser_version="1",
        created_at=at,
    )


def embedded(at: datetime, index: int, count: int = 2) -> ChunkEmbedded:
    return ChunkEmbedded(
        embedding_id=str(uuid.uuid4()),
        chunk_id=str(uuid.uuid4()),
        document_id=DOC,
        job_id=JOB,
        tenant="t",
        chunk_index=index,
        chunk_count=count,
        model="hash",
        model_version="1",
        dimensions=2,
        vector=(0.0, 1.0),
        embedded_at=at,
    )


def fold(events: Sequence[Any], now: datetime) -> tuple[dict[str, Any], list[Alert]]:
    tl: dict[str, Any] | None = None
    alerts: list[Alert] = []
    for i, event in enumerate(events):
        tl, found = observe(tl, event, Seen(0, i), now, LIMITS)
        alerts += found
    assert tl is not None
    return tl, alerts


# --- timelines and timestamps ---------------------------------------------------------


def test_a_normal_document_walks_through_every_stage_without_alerts() -> None:
    s = timedelta(seconds=1)
    tl, alerts = fold(
        [
            uploaded(),
            parsed(T0 + s),
            chunk(T0 + 2 * s, 0),
            chunk(T0 + 2 * s, 1),
            embedded(T0 + 3 * s, 0),
        ],
        T0 + 10 * s,
    )
    assert alerts == []
    assert waiting_stage(tl) == "embed"
    tl, _ = observe(tl, embedded(T0 + 4 * s, 1), Seen(0, 9), T0 + 10 * s, LIMITS)
    assert waiting_stage(tl) == "finalize"
    assert tl["stages"]["embed"]["done"] == int((T0 + 4 * s).timestamp() * 1000)


def test_future_upload_date_is_an_impossible_timestamp() -> None:
    _, alerts = fold([uploaded(T0 + timedelta(days=2))], T0)
    assert [a.kind for a in alerts] == [AlertKind.IMPOSSIBLE_TIMESTAMP]
    assert "in the future" in alerts[0].message
    assert alerts[0].document_id == DOC and alerts[0].stage == "parse"


def test_clock_skew_within_tolerance_is_not_an_alert() -> None:
    _, alerts = fold([uploaded(T0 + timedelta(seconds=3))], T0)
    assert alerts == []


def test_stage_finishing_before_the_upload_is_impossible() -> None:
    _, alerts = fold([uploaded(), parsed(T0 - timedelta(minutes=5))], T0 + timedelta(minutes=1))
    assert any("before the upload" in a.message for a in alerts)


def test_embedding_before_chunking_finished_is_impossible() -> None:
    _, alerts = fold(
        [uploaded(), parsed(T0), chunk(T0 + timedelta(minutes=1)), embedded(T0, 0)],
        T0 + timedelta(minutes=2),
    )
    assert any("before it started" in a.message and a.stage == "embed" for a in alerts)


def test_parse_faster_than_physics_for_the_size_is_impossible() -> None:
    # 100 MB at most 1 MB/s cannot be parsed in one second.
    _, alerts = fold(
        [uploaded(size=100_000_000), parsed(T0 + timedelta(seconds=1))], T0 + timedelta(minutes=1)
    )
    assert any("no parser is faster" in a.message for a in alerts)


def test_alert_ids_are_stable_per_condition() -> None:
    a = Alert(AlertKind.STAGE_STALLED, "x", stage="embed")
    b = Alert(AlertKind.STAGE_STALLED, "other words", stage="embed")
    c = Alert(AlertKind.STAGE_STALLED, "x", stage="parse")
    assert a.id == b.id != c.id


def test_dead_letter_fails_the_timeline_and_alerts_with_the_headers() -> None:
    tl, _ = fold([uploaded()], T0)
    headers = {
        "ragstream-dlq-stage": b"parse",
        "ragstream-dlq-document-id": DOC.encode(),
        "ragstream-dlq-error-class": b"CorruptDocument",
        "ragstream-dlq-error-message": b"bad pdf",
    }
    tl2, alert = observe_dead_letter(tl, headers, Seen(1, 7), "p.documents.uploaded.dlq")
    assert alert.kind == AlertKind.DLQ_MESSAGE and alert.stage == "parse"
    assert "CorruptDocument" in alert.message and alert.document_id == DOC
    assert tl2 is not None and waiting_stage(tl2) is None


# --- the watchdog ----------------------------------------------------------------------


def test_overdue_reports_documents_past_their_stage_sla() -> None:
    tl, _ = fold([uploaded(), parsed(T0 + timedelta(seconds=1))], T0)
    assert overdue([tl], T0 + timedelta(seconds=30), LIMITS) == []
    (late,) = overdue([tl], T0 + timedelta(seconds=90), LIMITS)
    assert late.stage == "chunk" and late.waited_s == pytest.approx(89, abs=1)


def probe(committed: int, end: int, members: int = 1) -> GroupProbe:
    return GroupProbe(members=members, committed={0: committed}, end={0: end})


def test_lag_with_progress_is_queued_and_lag_without_progress_is_stalled() -> None:
    tracker = StageTracker("embed", T0)
    health = stage_health(tracker, probe(0, 0), T0, LIMITS)
    assert health.state == StageState.IDLE
    health = stage_health(tracker, probe(5, 20), T0 + timedelta(seconds=10), LIMITS)
    assert health.state == StageState.FLOWING and health.lag == 15
    assert health.processed_per_min == 0  # this minute is not over: counted, not estimated
    health = stage_health(tracker, probe(5, 25), T0 + timedelta(seconds=35), LIMITS)
    assert health.state == StageState.FLOWING  # 25 s without progress: not yet
    health = stage_health(tracker, probe(5, 25), T0 + timedelta(seconds=41), LIMITS)
    assert health.state == StageState.STALLED and "no progress" in health.reason
    gone = stage_health(tracker, probe(5, 25, members=0), T0 + timedelta(seconds=50), LIMITS)
    assert gone.state == StageState.STALLED and "no worker" in gone.reason
    back = stage_health(tracker, probe(9, 25), T0 + timedelta(seconds=55), LIMITS)
    assert back.state == StageState.FLOWING
    # The minute T0..T0+60s is complete: 9 committed in it, whatever the looks' spacing.
    next_minute = stage_health(tracker, probe(12, 25), T0 + timedelta(seconds=61), LIMITS)
    assert next_minute.processed_per_min == 9
    later = stage_health(tracker, probe(12, 25), T0 + timedelta(seconds=185), LIMITS)
    assert later.processed_per_min == 0  # nothing in the minute before


def test_a_member_stuck_on_its_partitions_while_their_lag_grows_is_consumer_stalled() -> None:
    def look(c0: int, c1: int, e0: int, e1: int) -> GroupProbe:
        return GroupProbe(
            members=2,
            committed={0: c0, 1: c1},
            end={0: e0, 1: e1},
            assignments={"w-a": (0,), "w-b": (1,), "idle": ()},
        )

    tracker = StageTracker("embed", T0)
    assert stalled_consumers(tracker, look(10, 10, 20, 20), T0, LIMITS) == []
    # w-a moves on; w-b commits nothing while its partition fills up.
    later = T0 + timedelta(seconds=20)
    assert stalled_consumers(tracker, look(15, 10, 25, 25), later, LIMITS) == []
    later = T0 + timedelta(seconds=31)
    (alert,) = stalled_consumers(tracker, look(20, 10, 30, 30), later, LIMITS)
    assert alert.kind == AlertKind.CONSUMER_STALLED and alert.stage == "embed"
    assert alert.details["member"] == "w-b" and alert.details["partitions"] == "1"
    assert "from 10 to 20" in alert.message
    # Lag that does not grow is a slow consumer, not a stalled one.
    quiet = StageTracker("embed", T0)
    stalled_consumers(quiet, look(10, 10, 20, 20), T0, LIMITS)
    assert stalled_consumers(quiet, look(10, 10, 20, 20), later, LIMITS) == []
    # Progress again closes it (the next look raises nothing).
    assert stalled_consumers(tracker, look(20, 11, 30, 30), later, LIMITS) == []


def test_wait_state_gives_position_and_estimate_or_says_stalled() -> None:
    queued = wait_state("embed", 0, 120, "flowing", "busy", {"0": 100, "1": 5}, 60.0)
    assert queued.state == "queued" and queued.position == 20
    assert queued.estimate_s == pytest.approx(40)  # 30 per minute per partition
    stalled = wait_state("embed", 0, 120, "stalled", "no worker", {"0": 100}, 0.0)
    assert stalled.state == "stalled" and stalled.reason == "no worker"
    assert wait_state("embed", None, None, None, None, None, 0).state == "unknown"


def test_wait_state_says_since_when_and_what_the_monitor_saw() -> None:
    entered, progress = T0, T0 + timedelta(seconds=3)
    look = {"lag": 9, "members": 0}
    stalled = wait_state(
        "embed", 0, 120, "stalled", "no worker", {"0": 100}, 0.0,
        entered=entered, last_progress=progress, seen=look,
    )  # fmt: skip
    shown = stalled.as_dict()
    assert shown["since"] == progress.isoformat(timespec="seconds")
    assert shown["seen"] == look and shown["estimated_start"] is None
    queued = wait_state("embed", 0, 120, "flowing", "busy", {"0": 100}, 60.0, entered=entered)
    assert queued.since == entered
    start = datetime.fromisoformat(queued.as_dict()["estimated_start"])
    assert 15 <= (start - datetime.now(UTC)).total_seconds() <= 21  # 20 ahead at 1 per second


# --- the faust agents, in faust's test context ----------------------------------------------


class RecordingSink:
    def __init__(self) -> None:
        self.opened: list[Alert] = []
        self.fail_with: Exception | None = None

    def open(self, alerts: Sequence[Alert]) -> list[Alert]:
        if self.fail_with is not None:
            raise self.fail_with
        self.opened += alerts
        return list(alerts)


def make_monitor(tmp_path: Path) -> Any:
    """A monitor whose I/O goes nowhere: no broker, no database, a recording sink."""
    from ragstream.monitor.app import Monitor

    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",
        database_url="postgresql+psycopg://nobody@127.0.0.1:9/none",
        data_dir=tmp_path,
        partitions=1,
        topic_prefix="unit.",
    )
    built = Monitor(settings, sink=RecordingSink())  # type: ignore[arg-type]
    built.app.finalize()
    built.app.flow_control.resume()
    return built


def in_loop(test: Callable[[Any], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        await test(make_monitor(tmp_path))

    asyncio.run(main())


def test_stage_agent_raises_an_alert_for_a_forged_future_date(tmp_path: Path) -> None:
    async def check(monitor: Any) -> None:
        forged = uploaded(utc_now() + timedelta(days=1))
        async with monitor.watch_stages.test_context() as agent:
            await agent.put(SingleObjectCodec().encode(forged), key=DOC.encode())
        (alert,) = monitor.sink.opened
        assert alert.kind == AlertKind.IMPOSSIBLE_TIMESTAMP and alert.document_id == DOC
        assert monitor.timelines[DOC]["stages"]["parse"]["offset"] == 0
        assert DOC in monitor.waiting

    in_loop(check, tmp_path)


def test_dlq_agent_alerts_for_every_record(tmp_path: Path) -> None:
    async def check(monitor: Any) -> None:
        headers = {"ragstream-dlq-stage": b"chunk", "ragstream-dlq-document-id": DOC.encode()}
        async with monitor.watch_dlqs.test_context() as agent:
            await agent.put(b"poison", key=DOC.encode(), headers=headers)
        (alert,) = monitor.sink.opened
        assert alert.kind == AlertKind.DLQ_MESSAGE and alert.stage == "chunk"

    in_loop(check, tmp_path)


def test_an_undecodable_record_is_counted_not_dropped_silently(tmp_path: Path) -> None:
    from ragstream.consumers import metrics

    counter = metrics.MONITOR_EVENTS.labels("stage", "undecodable")
    before = counter._value.get()

    async def check(monitor: Any) -> None:
        async with monitor.watch_stages.test_context() as agent:
            await agent.put(b"not avro", key=b"k")
        assert monitor.sink.opened == []

    in_loop(check, tmp_path)
    assert counter._value.get() == before + 1


def test_a_failing_sink_crashes_the_agent_instead_of_acking(tmp_path: Path) -> None:
    async def check(monitor: Any) -> None:
        monitor.sink.fail_with = RuntimeError("database exploded")
        forged = uploaded(utc_now() + timedelta(days=1))
        async with monitor.watch_stages.test_context() as agent:
            event = await agent.put(SingleObjectCodec().encode(forged), key=b"k")
            await asyncio.sleep(0.1)
            assert not event.message.acked
            crashed = [a for a in agent._actors if a.crashed]
            assert crashed and "database exploded" in str(crashed[0]._crash_reason)
        assert monitor.sink.opened == []

    in_loop(check, tmp_path)
