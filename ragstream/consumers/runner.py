"""The one stage runner: Kafka loop, micro-batches, transactions, commits, retries, DLQ.

For every batch, in this order and no other:

1. decode (undecodable records, and events with ids that are not UUIDs, become failures);
2. mark the batch's documents as started (``parsing``, ...), so progress is visible;
3. run the stage in a worker thread; past a second, the consumer is polled
   (a slow batch never exceeds ``max.poll.interval.ms``) and takes the next
   batch meanwhile, then pauses its partitions;
4. one database transaction: upserts (de-duplicated by key), status changes,
   and ``failed`` for every failure;
5. produce the output events and the DLQ records, and wait for every ack;
6. store the offsets (``enable.auto.offset.store=false``); auto-commit sends them.

Its parts: the partition feed (:mod:`ragstream.consumers.feed`) polls, reads
ahead, pauses and resumes, and rebuilds a stalled consumer; the offset book
(:mod:`ragstream.consumers.offsets`) says what may be stored, never past a
message begun and not finished; the retry policy (:class:`ragstream.errors.RetryPolicy`)
decides what an error means: retry, split, dead-letter or raise.

A retryable error anywhere (database, broker, embedder) stores nothing: the
batch is retried after a jittered exponential backoff while the consumer stays
in its group. Any error of a message's own (a permanent one, or one that keeps
failing while the database and the broker answer) ends in the DLQ, after the
batch is split so the others pass. A stop abandons the batch in hand: nothing
of it, and nothing behind it, is stored, so it is all redelivered.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy import Engine

from ragstream import topology, tracing
from ragstream.consumers import decode, metrics
from ragstream.consumers.base import Failure, Incoming, Stage, StageOutput
from ragstream.consumers.feed import PAUSE_AFTER_S, PartitionFeed
from ragstream.consumers.health import HealthServer, refresh_lag
from ragstream.consumers.offsets import OffsetBook, Position
from ragstream.consumers.outage import OutageAlert
from ragstream.consumers.probe import DependencyProbe
from ragstream.context import StageContext
from ragstream.db import repository
from ragstream.db.repository import Transition
from ragstream.deadletter import DeadLetter, attempt_of, dead_letter_headers
from ragstream.embedding.base import Embedder
from ragstream.errors import (
    Action,
    PermanentError,
    RetryPolicy,
    as_permanent,
)
from ragstream.logs import message_fields
from ragstream.producers.producer import EventProducer
from ragstream.settings import Settings
from ragstream.state import DocumentStatus

log = structlog.get_logger(__name__)
T = TypeVar("T")

__all__ = ["PAUSE_AFTER_S", "RunStats", "StageRunner"]


@dataclass
class RunStats:
    batches: int = 0
    processed: int = 0
    failed: int = 0
    retries: int = 0
    rebuilt_consumers: int = 0


class StageRunner:
    """Runs one stage as one member of its consumer group."""

    def __init__(
        self,
        stage: Stage,
        settings: Settings,
        engine: Engine,
        ctx: StageContext,
        *,
        health: bool = False,
        group_id: str | None = None,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.engine = engine
        self.ctx = ctx
        self.spec = topology.STAGES[stage.name]
        self.input_topic = settings.topic(self.spec.input_topic)
        self.dlq_topic = settings.topic(stage.dlq_topic or topology.dlq(self.spec.input_topic))
        self.group_id = group_id or settings.topic_prefix + self.spec.group_id
        self.batch_size = min(settings.max_batch_size, stage.batch_limit or settings.max_batch_size)
        self.heartbeat = time.monotonic()
        self.feed = PartitionFeed(
            settings,
            stage=stage.name,
            topic=self.input_topic,
            group_id=self.group_id,
            batch_size=self.batch_size,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
            beat=self._beat,
        )
        self.offsets = OffsetBook()
        self.outage = OutageAlert(stage.name, self.engine)
        self.probe = DependencyProbe(
            stage.name,
            engine,
            [self.input_topic, self.dlq_topic]
            + ([settings.topic(self.spec.output_topic)] if self.spec.output_topic else []),
            lambda topic: self.consumer.list_topics(topic, timeout=5),
            lambda: (
                embedder
                if isinstance(embedder := getattr(stage, "embedder", None), Embedder)
                else None
            ),
            self.outage,
        )
        self.policy = RetryPolicy(
            initial_s=settings.retry_backoff_initial_s,
            max_s=settings.retry_backoff_max_s,
            max_attempts=settings.max_batch_attempts,
        )
        self.producer = EventProducer(settings)
        self.stats = RunStats()
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"stage-{stage.name}")
        self._lag_refreshed = 0.0
        self.health = HealthServer(self, settings.health_port) if health else None
        self._trace: tracing.BatchTrace | None = None
        self._phases: dict[str, float] = {}
        # Messages of the batch in hand that are failures whatever the stage does.
        self._rejected: dict[Position, PermanentError] = {}

    @property
    def consumer(self) -> Consumer:
        return self.feed.consumer

    @property
    def _assigned(self) -> set[tuple[str, int]]:
        return self.feed.assigned

    @property
    def _prefetched(self) -> list[Message]:
        return self.feed.prefetched

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    # --- lifecycle -------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end: the batch in hand is finished or abandoned, then close."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("stopping", stage=self.stage.name, signal=signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    @property
    def ready(self) -> bool:
        return bool(self._assigned)

    def run(
        self, *, max_messages: int | None = None, idle_timeout_s: float | None = None
    ) -> RunStats:
        """Consume until stopped, ``max_messages`` handled, or idle for ``idle_timeout_s``."""
        self.stage.setup(self.ctx)
        if self.health is not None:
            self.health.start()
        self.feed.subscribe()
        last_work = time.monotonic()
        try:
            while not self._stopping.is_set():
                self._beat()
                if (
                    max_messages is not None
                    and self.stats.processed + self.stats.failed >= max_messages
                ):
                    break
                batch = self.feed.next_batch()
                self._refresh_lag()
                if not batch:
                    if idle_timeout_s is not None and time.monotonic() - last_work > idle_timeout_s:
                        break
                    self._rebuild_if_stalled()
                    continue
                self._handle(batch)
                last_work = time.monotonic()
        finally:
            self._close()
        return self.stats

    def _refresh_lag(self, every_s: float = 5.0) -> None:
        if self.health is not None and time.monotonic() - self._lag_refreshed > every_s:
            self._lag_refreshed = time.monotonic()
            refresh_lag(self.consumer, self.stage.name)

    def _close(self) -> None:
        try:
            self.producer.close()
            self.feed.close()  # commits the stored offsets and leaves the group
        finally:
            self._executor.shutdown(wait=False)
            if self.health is not None:
                self.health.stop()
            log.info(
                "stopped",
                stage=self.stage.name,
                unfinished=self.offsets.unfinished(),
                **self.stats.__dict__,
            )

    def _rebuild_if_stalled(self) -> None:
        """A consumer that reads nothing while its partitions hold messages is made anew."""
        if self.feed.rebuild_if_stalled():
            self.stats.rebuilt_consumers += 1
            self.offsets.forget(self.offsets.unfinished())

    # --- rebalance -------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.feed.assigned_partitions(partitions)
        log.info("assigned", stage=self.stage.name, partitions=[p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.feed.taken_away(consumer, partitions)
        self.offsets.forget((p.topic, p.partition) for p in partitions)
        try:  # commit the finished work of the partitions we hand over
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit_on_revoke_failed", error=str(exc))
        log.info("revoked", stage=self.stage.name, partitions=[p.partition for p in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.feed.taken_away(consumer, partitions)
        self.offsets.forget((p.topic, p.partition) for p in partitions)
        log.warning(
            "partitions_lost", stage=self.stage.name, partitions=[p.partition for p in partitions]
        )

    def _while_polling(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the stage's thread while this one keeps the consumer in its group."""
        return self.feed.keep_alive_until(self._executor.submit(fn))

    # --- one batch -------------------------------------------------------
    def _handle(self, raw: list[Message]) -> None:
        started = time.monotonic()
        self._phases = dict.fromkeys(("stage_s", "commit_s", "publish_s"), 0.0)
        self.feed.revoked_during_batch = set()
        self._rejected = {}
        batch = [self._decode(m) for m in raw]
        self.offsets.begin(map(_position, batch))
        traced = [(_document(m), m.header(tracing.TRACEPARENT)) for m in batch]
        with tracing.batch_spans(self.stage.name, self.input_topic, traced) as self._trace:
            self._handle_decoded(batch, started)
        self._trace = None

    def _ours(self, batch: list[Incoming]) -> list[Incoming]:
        gone = self.feed.revoked_during_batch
        return [m for m in batch if (m.topic, m.partition) not in gone]

    def _handle_decoded(self, batch: list[Incoming], started: float) -> bool:
        """Steps 2-6 of the module docstring, as the retry policy says; False if abandoned.

        A retryable error is retried for as long as a dependency is down. One that
        persists while the database and the broker answer, or any other error, is
        the batch's own: its messages are tried one by one, and one that still
        fails is dead-lettered. A stop abandons the batch (and the rest of a
        split one): the offset book then stores nothing from it on.
        """
        attempt = 0
        dead: PermanentError | None = None
        while True:
            attempt += 1
            batch = self._ours(batch)
            if not batch:
                return True
            try:
                self._while_polling(partial(self._process_and_publish, batch, dead))
                break
            except Exception as exc:
                decision = self.policy.decide(
                    exc,
                    attempt=attempt,
                    messages=len(batch),
                    dependencies_answer=self.probe,
                )
                if decision.action is Action.RAISE:
                    raise
                if decision.action is Action.SPLIT:
                    for message in batch:
                        if self._stopping.is_set():
                            return False
                        if not self._handle_decoded([message], time.monotonic()):
                            return False  # abandoned: nothing behind it may be taken
                    return True
                if decision.action is Action.DEAD_LETTER and dead is None:
                    dead = decision.error
                    continue
                delay = decision.delay_s or self.policy.backoff(attempt, exc)
                self.stats.retries += 1
                metrics.RETRIES.labels(self.stage.name).inc()
                log.warning(
                    "batch_retry",
                    stage=self.stage.name,
                    attempt=attempt,
                    backoff_s=round(delay, 2),
                    error_class=type(exc).__name__,
                    error=str(exc)[:500],
                )
                if self.feed.sleep(delay, self._stopping):
                    return False  # stopping: nothing stored, the batch will be redelivered
        self.outage.up()  # a batch went through: whatever was down answers again
        self.offsets.finish(map(_position, self._ours(batch)))
        self.feed.store(self.offsets.take())
        elapsed = time.monotonic() - started
        metrics.BATCH_SECONDS.labels(self.stage.name).observe(elapsed)
        self.stats.batches += 1
        log.debug(
            "batch_done",
            stage=self.stage.name,
            topic=self.input_topic,
            messages=len(batch),
            document_ids=sorted({d for d in map(_document, batch) if d})[:50],
            elapsed_s=round(elapsed, 3),
            **{k: round(v, 3) for k, v in self._phases.items()},
        )
        return True

    def _decode(self, msg: Message) -> Incoming:
        m = decode.incoming(msg)
        if m.value is not None:  # a null value is a tombstone: nothing to do, not poison
            try:
                self._decode_event(m)
            except Exception as exc:  # a dependency of the codec: decoded again when retried
                log.info("decode_deferred", stage=self.stage.name, error=str(exc)[:300])
        return m

    def _decode_event(self, m: Incoming) -> None:
        rejected = decode.decode(m, self.ctx.codec, self.stage.consumes)
        if rejected is not None:
            self._rejected[_position(m)] = rejected

    def _process_and_publish(self, batch: list[Incoming], dead: PermanentError | None) -> None:
        if dead is not None:  # one message that keeps failing: dead-letter it
            out = StageOutput()
            for m in batch:
                if m.value is not None:
                    out.extend(self.stage.failed(m, dead) if m.event else _failure(m, dead))
            self._write(out)
        else:
            for m in batch:  # decoded once its codec's dependency answers again
                if m.event is None and m.value is not None and _position(m) not in self._rejected:
                    self._decode_event(m)
            failures = [
                Failure(m, self._rejected[_position(m)])
                for m in batch
                if _position(m) in self._rejected
            ]
            good = [m for m in batch if m.event is not None and _position(m) not in self._rejected]
            self._mark_started(good)
            out = self._work(good)
            out.failures = failures + out.failures
        began = time.monotonic()
        self._publish(out)
        self._phases["publish_s"] += time.monotonic() - began
        self.stats.processed += len(batch) - len(out.failures)
        self.stats.failed += len(out.failures)
        metrics.MESSAGES.labels(self.stage.name, "processed").inc(len(batch) - len(out.failures))
        metrics.MESSAGES.labels(self.stage.name, "dlq").inc(len(out.failures))

    def _mark_started(self, batch: list[Incoming]) -> None:
        status = self.stage.started_status
        if status is None or not batch:
            return
        seen: set[Any] = set()
        with self.engine.begin() as conn:
            for m in batch:
                key = (m.document_id, m.job_id)
                if m.document_id is None or key in seen:
                    continue
                seen.add(key)
                repository.apply_transition(conn, Transition(m.document_id, m.job_id, status))

    def _work(self, batch: list[Incoming]) -> StageOutput:
        """The stage and its transaction on the whole batch.

        A permanent error, from the stage or from the database refusing a row,
        splits the batch: each message is done alone, so only the bad one fails.
        """
        if not batch:
            return StageOutput()
        try:
            began = time.monotonic()
            out = self.stage.process(batch, self.ctx)
            self._phases["stage_s"] += time.monotonic() - began
            began = time.monotonic()
            self._write(out)
            self._phases["commit_s"] += time.monotonic() - began
            return out
        except Exception as exc:
            error = as_permanent(exc)
            if error is None:
                raise
            if len(batch) == 1:
                out = self.stage.failed(batch[0], error)
                self._write(out)
                return out
        out = StageOutput()
        for message in batch:
            out.extend(self._work([message]))
        return out

    def _write(self, out: StageOutput) -> None:
        """Step 4: the batch's one database transaction."""
        failed_docs = {f.message.document_id for f in out.failures}
        with self.engine.begin() as conn:
            for statement in out.statements:
                conn.execute(statement)
            for model, rows in _by_model(out.inserts).items():
                repository.insert_absent(conn, model, rows)
            for model, rows in _by_model(out.upserts).items():
                repository.upsert(conn, model, rows)
            for t in out.transitions:
                if t.document_id not in failed_docs:
                    repository.apply_transition(conn, t)
            for failure in out.failures:
                doc = failure.message.document_id
                if doc is None or not self.stage.fails_documents:
                    continue
                repository.apply_transition(
                    conn,
                    Transition(
                        doc,
                        failure.message.job_id,
                        DocumentStatus.FAILED,
                        {
                            "failed_stage": self.stage.name,
                            "error_class": failure.error.error_class,
                            "error_message": f"{self.stage.name}: {failure.error.message}"[:2000],
                        },
                    ),
                )

    def _publish(self, out: StageOutput) -> None:
        failed_docs = {str(f.message.document_id) for f in out.failures if f.message.document_id}
        for event in out.events:
            doc = getattr(event.event, "document_id", None)
            if doc is not None and str(doc) in failed_docs:
                continue
            self.producer.send(
                event.topic,
                key=event.key,
                value=self.ctx.codec.encode(event.event),
                headers=self._trace.header_for(doc) if self._trace is not None else None,
                spread=event.spread,
            )
        for failure in out.failures:
            self.producer.send(
                self.dlq_topic,
                key=failure.message.key,
                value=failure.message.value,
                headers=self._dlq_headers(failure),
            )
            m = failure.message
            log.warning(
                "dead_lettered",
                **message_fields(
                    self.stage.name, m.topic, m.partition, m.offset, m.document_id, m.job_id
                ),
                error_class=failure.error.error_class,
                error=failure.error.message[:300],
            )
        self.producer.wait()

    def _dlq_headers(self, failure: Failure) -> list[tuple[str, str | bytes | None]]:
        m = failure.message
        letter = DeadLetter(
            origin_topic=m.topic,
            origin_partition=m.partition,
            origin_offset=m.offset,
            stage=self.stage.name,
            error_class=failure.error.error_class,
            error_message=failure.error.message,
            document_id=m.document_id,
            attempt=attempt_of(m.headers),
        )
        return dead_letter_headers(m.headers, letter)


def _by_model(
    rows: list[tuple[type[Any], dict[str, Any]]],
) -> dict[type[Any], list[dict[str, Any]]]:
    grouped: dict[type[Any], list[dict[str, Any]]] = {}
    for model, row in rows:
        grouped.setdefault(model, []).append(row)
    return grouped


def _failure(m: Incoming, error: PermanentError) -> StageOutput:
    return StageOutput(failures=[Failure(m, error)])


def _embedder_of(stage: Stage) -> Embedder | None:
    """The stage's embedder once set up (the embed stage's), for the dependency probe."""
    embedder = getattr(stage, "embedder", None)
    return embedder if isinstance(embedder, Embedder) else None


def _document(m: Incoming) -> str | None:
    return str(m.document_id) if m.document_id else None


def _position(m: Incoming) -> Position:
    return (m.topic, m.partition, m.offset)
