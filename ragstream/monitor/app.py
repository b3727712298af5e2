"""The monitor: a faust-streaming app that watches every stage topic and every DLQ.

Two agents read the records; a timer is the watchdog. What they decide lives in
:mod:`ragstream.monitor.logic`; this module moves data between Kafka, faust's
tables, the database and the alerts topic.

Error policy. Faust acks a record when the agent's loop moves on, even if the
body raised; so the agents iterate with ``noack()`` and ack a record only once
it is handled. Handled means: folded into the tables and, when it raised
alerts, those alerts are in the database and on ``pipeline.alerts``. A record
the monitor cannot read is not silently dropped either: it is logged with its
coordinates and counted (``ragstream_monitor_events_total{outcome="undecodable"}``)
before the ack, and the stage that owns it dead-letters it, which the DLQ
agent then reports. Retryable failures (database or broker down) are retried
with backoff while the record stays unacked; anything else crashes the worker
(exit code 1), so the record is redelivered after the supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
import structlog
from mode import CrashingSupervisor
from prometheus_client import start_http_server
from sqlalchemy import Engine, select

from ragstream import topology
from ragstream.blobstore import BlobStore
from ragstream.consumers import metrics
from ragstream.db.engine import make_engine
from ragstream.db.models import Document
from ragstream.deadletter import DeadLetter
from ragstream.errors import RagstreamError, UndecodableEvent, is_retryable
from ragstream.logs import message_fields
from ragstream.monitor import store
from ragstream.monitor.alerts import AlertSink
from ragstream.monitor.logic import (
    Alert,
    AlertKind,
    Limits,
    MinuteCounts,
    Seen,
    StageHealth,
    StageState,
    StageTracker,
    Timeline,
    observe,
    observe_dead_letter,
    overdue,
    sla_alert,
    stage_health,
    stalled_alert,
    stalled_consumers,
    waiting_stage,
)
from ragstream.monitor.probe import GroupProber, Look
from ragstream.progress import status_counts
from ragstream.schemas.codec import Codec, make_codec
from ragstream.settings import Settings
from ragstream.state import is_terminal

log = structlog.get_logger(__name__)
T = TypeVar("T")

STAGE_OF_TOPIC = {spec.input_topic: name for name, spec in topology.STAGES.items()}


def _retryable(exc: BaseException) -> bool:
    return is_retryable(exc)


class Monitor:
    """The monitor's state and its handlers; :meth:`build` wires them into a faust app."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        codec: Codec | None = None,
        sink: AlertSink | None = None,
        prober: GroupProber | None = None,
    ) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.engine = engine or make_engine(settings)
        self.codec = codec or make_codec(settings)
        self.sink = sink or AlertSink(settings, self.engine)
        self.prober = prober
        started = datetime.now(UTC)
        self.trackers = {name: StageTracker(name, started) for name in topology.STAGE_NAMES}
        self.waiting: dict[str, dict[str, Any]] = {}  # to write to monitor_waiting
        self.finished: set[str] = set()  # documents the database says are terminal
        self.last_look: Look | None = None
        self.pruned_at: datetime | None = None
        self.app = self._make_app()
        self.timelines = self.app.Table("timelines", default=None, partitions=settings.partitions)
        self.arrivals = {name: MinuteCounts() for name in topology.STAGE_NAMES}
        self.stage_topic = self.app.topic(
            *(settings.topic(t) for t in topology.STAGE_TOPICS),
            key_serializer="raw",
            value_serializer="raw",
        )
        self.dlq_topic = self.app.topic(
            *(settings.topic(topology.dlq(t)) for t in topology.STAGE_TOPICS),
            key_serializer="raw",
            value_serializer="raw",
        )
        # A crashed agent stops the worker instead of being restarted past its record.
        self.watch_stages = self.app.agent(
            self.stage_topic, name="watch-stages", supervisor_strategy=CrashingSupervisor
        )(self._watch_stages)
        self.watch_dlqs = self.app.agent(
            self.dlq_topic, name="watch-dlqs", supervisor_strategy=CrashingSupervisor
        )(self._watch_dlqs)
        self.app.timer(settings.monitor_interval_s, name="watchdog")(self._tick)

    def _make_app(self) -> faust.App:
        s = self.settings
        (s.data_dir / "monitor").mkdir(parents=True, exist_ok=True)
        return faust.App(
            f"{s.topic_prefix}ragstream-monitor",
            broker=[f"kafka://{host}" for host in s.bootstrap.split(",")],
            store="memory://",
            datadir=str(s.data_dir / "monitor"),
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            web_enabled=False,
            broker_commit_interval=1.0,
            stream_wait_empty=False,
        )

    # --- the agents ---------------------------------------------------------------------
    async def _watch_stages(self, stream: faust.StreamT[bytes]) -> None:
        await self._consume(stream, self.on_stage_record)

    async def _watch_dlqs(self, stream: faust.StreamT[bytes]) -> None:
        await self._consume(stream, self.on_dlq_record)

    async def _consume(
        self,
        stream: faust.StreamT[bytes],
        handle: Callable[[faust.EventT[bytes]], Awaitable[None]],
    ) -> None:
        """Ack each record after it is handled; on an error, say which record and crash."""
        async for event in cast("faust.Stream[bytes]", stream).noack().events():
            try:
                await handle(event)
            except Exception as exc:
                msg = event.message
                log.error(
                    "monitor_crashed",
                    **message_fields("monitor", str(msg.topic), msg.partition, msg.offset),
                    error_class=type(exc).__name__,
                    error=str(exc)[:500],
                )
                raise
            await stream.ack(event)

    async def on_stage_record(self, event: faust.EventT[bytes]) -> None:
        msg = event.message
        topic = str(msg.topic)
        stage = STAGE_OF_TOPIC.get(topic.removeprefix(self.settings.topic_prefix), "unknown")
        where = message_fields(stage, topic, msg.partition, msg.offset)
        try:
            decoded = self.codec.decode(event.value)
        except UndecodableEvent as exc:
            metrics.MONITOR_EVENTS.labels("stage", "undecodable").inc()
            log.warning("monitor_undecodable", **where, error=str(exc)[:300])
            return
        document_id = str(getattr(decoded, "document_id", ""))
        timeline, alerts = observe(
            self.timelines.get(document_id),
            decoded,
            Seen(msg.partition, msg.offset),
            datetime.now(UTC),
            self.limits,
        )
        self.timelines[document_id] = timeline
        if stage in self.arrivals:
            self.arrivals[stage].add(datetime.now(UTC))
        self._note_waiting(timeline)
        metrics.MONITOR_EVENTS.labels("stage", "ok").inc()
        if alerts:
            where.update(document_id=document_id, job_id=getattr(decoded, "job_id", None))
            log.warning("monitor_alerts", **where, kinds=[a.kind.value for a in alerts])
            await self._durably(lambda: self.sink.open(alerts))

    async def on_dlq_record(self, event: faust.EventT[bytes]) -> None:
        msg = event.message
        raw = msg.headers or []
        pairs = raw.items() if isinstance(raw, Mapping) else raw
        headers = {k: v or b"" for k, v in pairs}
        topic = str(msg.topic)
        seen = Seen(msg.partition, msg.offset)
        dead = DeadLetter.from_headers(headers).document_id
        document_id = str(dead) if dead else None
        current = self.timelines.get(document_id) if document_id else None
        timeline, alert = observe_dead_letter(current, headers, seen, topic)
        if document_id and timeline is not None:
            self.timelines[document_id] = timeline
            self.waiting.pop(document_id, None)
        metrics.MONITOR_EVENTS.labels("dlq", "ok").inc()
        log.warning(
            "monitor_dead_letter",
            **message_fields(
                alert.stage or "unknown", topic, msg.partition, msg.offset, document_id
            ),
        )
        await self._durably(lambda: self.sink.open([alert]))

    async def _durably(self, fn: Callable[[], T]) -> T:
        """Run blocking I/O off the loop; retry what is retryable, with backoff, unacked."""
        backoff = 0.5
        while True:
            try:
                return await asyncio.to_thread(fn)
            except Exception as exc:
                if not _retryable(exc):
                    raise
                log.warning("monitor_retry", error_class=type(exc).__name__, error=str(exc)[:300])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _note_waiting(self, timeline: Timeline) -> None:
        document_id = str(timeline["document_id"])
        stage = waiting_stage(timeline)
        if stage is None:
            return
        entry = timeline["stages"][stage]
        self.waiting[document_id] = {
            "document_id": document_id,
            "stage": stage,
            "partition": int(entry["partition"]),
            "offset": int(entry["offset"]),
            "since": datetime.fromtimestamp(entry["since"] / 1000, UTC),
        }

    # --- the watchdog ---------------------------------------------------------------------
    async def _tick(self) -> None:
        try:
            await self.tick()
        except RagstreamError as exc:
            log.warning("watchdog_skipped", error_class=type(exc).__name__, error=str(exc)[:300])
        except Exception as exc:
            if not _retryable(exc):
                raise
            log.warning("watchdog_skipped", error_class=type(exc).__name__, error=str(exc)[:300])

    async def tick(self) -> list[Alert]:
        """One look at everything; returns the alerts that are open after it."""
        now = datetime.now(UTC)
        timelines = [tl for _, tl in list(self.timelines.items()) if tl]
        arrivals = self._arrivals_per_min()
        waiting, self.waiting = self.waiting, {}
        try:
            return await asyncio.to_thread(self._tick_blocking, now, timelines, arrivals, waiting)
        except BaseException:
            for key, row in waiting.items():
                self.waiting.setdefault(key, row)
            raise

    def _arrivals_per_min(self) -> dict[str, float]:
        """Records that arrived on each stage's topic in the last complete minute."""
        now = datetime.now(UTC)
        return {name: float(counts.last_minute(now)) for name, counts in self.arrivals.items()}

    def _tick_blocking(
        self,
        now: datetime,
        timelines: Sequence[Timeline],
        arrivals: dict[str, float],
        waiting: dict[str, dict[str, Any]],
    ) -> list[Alert]:
        active: list[Alert] = []
        healths = self._stage_healths(now, arrivals)
        stalled = [stalled_alert(h) for h in healths if h.state == StageState.STALLED]
        active += stalled
        stuck = self._stalled_consumers(now)
        active += stuck
        late = self._sla_alerts(now, timelines)
        active += late
        with self.engine.begin() as conn:
            store.forget_waiting(conn, [uuid.UUID(d) for d in self.finished if d not in waiting])
            store.save_waiting(conn, [w for d, w in waiting.items() if d not in self.finished])
        self.sink.open(active)
        self.sink.resolve(AlertKind.STAGE_STALLED, [a.id for a in stalled])
        self.sink.resolve(AlertKind.CONSUMER_STALLED, [a.id for a in stuck])
        self.sink.resolve(AlertKind.SLA_EXCEEDED, [a.id for a in late])
        self.sink.expire()
        self._housekeeping(now)
        with self.engine.connect() as conn:
            counts = store.open_counts(conn)
        for kind in AlertKind:
            metrics.ALERTS_OPEN.labels(kind.value).set(counts.get(kind.value, 0))
        for status, n in status_counts(self.engine).items():
            metrics.DOCUMENTS.labels(status).set(n)
        return active

    def _stage_healths(self, now: datetime, arrivals: dict[str, float]) -> list[StageHealth]:
        if self.prober is None:
            self.prober = GroupProber(self.settings)
        look = self.prober.look()
        self.last_look = look
        rows = []
        for name, probe in look.groups.items():
            health = stage_health(self.trackers[name], probe, now, self.limits)
            rows.append(
                store.StageRow(
                    health,
                    arrivals.get(name, 0.0),
                    look.dlq_messages.get(name, 0),
                    dict(probe.committed),
                    dict(probe.end),
                )
            )
            metrics.STAGE_STALLED.labels(name).set(int(health.state == StageState.STALLED))
            metrics.STAGE_THROUGHPUT.labels(name).set(health.processed_per_min)
            metrics.DLQ_MESSAGES.labels(name).set(look.dlq_messages.get(name, 0))
            for partition, lag in probe.lag_by_partition.items():
                metrics.LAG.labels(name, str(partition)).set(lag)
        with self.engine.begin() as conn:
            store.save_stages(conn, rows)
            store.record_history(conn, rows)  # the dashboard's charts
        return [r.health for r in rows]

    def _housekeeping(self, now: datetime) -> None:
        """At most once an hour: prune what is older than ``monitor_retention_s``, and the
        objects of the S3 blob store no upload names any more."""
        if self.pruned_at is not None and (now - self.pruned_at).total_seconds() < 3600:
            return
        with self.engine.begin() as conn:
            gone = store.prune(conn, self.settings.monitor_retention_s)
        try:
            gone["blob_objects"] = BlobStore(self.settings, self.engine).sweep(
                self.settings.blob_sweep_after_s
            )
        except Exception as exc:  # the object store may be down: the next sweep catches up
            log.warning("blob_sweep_failed", error=str(exc)[:300])
        self.pruned_at = now
        if len(self.finished) > 100_000:  # ids only skip a database look; they can go
            self.finished.clear()
        if any(gone.values()):
            log.info("monitor_pruned", **gone)

    def _stalled_consumers(self, now: datetime) -> list[Alert]:
        """From the look just taken: members stuck on their partitions while lag grows."""
        if self.last_look is None:
            return []
        found = []
        for name, probe in self.last_look.groups.items():
            found += stalled_consumers(self.trackers[name], probe, now, self.limits)
        return found

    def _sla_alerts(self, now: datetime, timelines: Sequence[Timeline]) -> list[Alert]:
        """Overdue by the timeline, and not finished by the database: the SLA is exceeded."""
        late = [
            item
            for item in overdue(timelines, now, self.limits)
            if item.document_id not in self.finished
        ]
        if not late:
            return []
        with self.engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    select(Document.id, Document.status).where(
                        Document.id.in_([item.document_id for item in late])
                    )
                ).all()
            )
        alerts = []
        for item in late:
            key = _as_uuid(item.document_id)
            status = statuses.get(key) if key is not None else None
            if status is not None and is_terminal(status):
                self.finished.add(item.document_id)
                continue
            alerts.append(sla_alert(item, self.limits))
        return alerts

    # --- running ------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM; exits non-zero if the app crashed."""
        from faust import Worker

        if self.settings.monitor_metrics_port:
            try:
                start_http_server(self.settings.monitor_metrics_port)
            except OSError as exc:  # a busy port costs the metrics, not the alerts
                log.warning("metrics_port_unavailable", error=str(exc))
        worker = Worker(self.app, loglevel="INFO", redirect_stdouts=False, override_logging=False)
        worker.execute_from_commandline()


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def build(settings: Settings) -> Monitor:
    return Monitor(settings)
