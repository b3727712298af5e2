"""The one stage runner: Kafka loop, micro-batches, transactions, commits, retries, DLQ.

For every batch, in this order and no other:

1. decode (undecodable records become failures);
2. mark the batch's documents as started (``parsing``, ...), so progress is visible;
3. run the stage in a worker thread; past a second, the consumer is polled
   (a slow batch never exceeds ``max.poll.interval.ms``) and takes the next
   batch meanwhile, then pauses its partitions;
4. one database transaction: upserts (de-duplicated by key), status changes,
   and ``failed`` for every failure;
5. produce the output events and the DLQ records, and wait for every ack;
6. store the offsets (``enable.auto.offset.store=false``); auto-commit sends them.

A retryable error anywhere (database, broker, embedder) stores nothing: the
batch is retried after a bounded exponential backoff while the consumer stays
in its group. A failed batch never moves the committed offset.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from ragstream import topology, tracing
from ragstream.consumers import metrics
from ragstream.consumers.base import Failure, Incoming, Stage, StageContext, StageOutput
from ragstream.consumers.health import HealthServer, refresh_lag
from ragstream.db import repository
from ragstream.db.repository import Transition
from ragstream.errors import (
    DependencyUnavailable,
    PermanentError,
    RagstreamError,
    RejectedByDatabase,
    RetriesExhausted,
    UndecodableEvent,
)
from ragstream.kafka import consumer_config
from ragstream.logs import message_fields
from ragstream.producers.producer import EventProducer
from ragstream.settings import Settings
from ragstream.state import DocumentStatus

log = structlog.get_logger(__name__)
T = TypeVar("T")

ATTEMPT_HEADER = "ragstream-attempt"
PAUSE_AFTER_S = 1.0
"""A batch running longer than this has its partitions paused while the consumer is polled."""


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
        self.dlq_topic = settings.topic(topology.dlq(self.spec.input_topic))
        self.group_id = group_id or settings.topic_prefix + self.spec.group_id
        self.consumer = self._new_consumer()
        self.producer = EventProducer(settings)
        self.stats = RunStats()
        self._stopping = threading.Event()
        self._carry: list[Message] = []
        self._assigned: set[tuple[str, int]] = set()
        self._revoked_during_batch: set[tuple[str, int]] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"stage-{stage.name}")
        self.heartbeat = time.monotonic()
        self._lag_refreshed = 0.0
        self.health = HealthServer(self, settings.health_port) if health else None
        self._trace: tracing.BatchTrace | None = None
        self._last_read = self._stall_checked = time.monotonic()
        self._phases: dict[str, float] = {}
        self.batch_size = min(settings.max_batch_size, stage.batch_limit or settings.max_batch_size)

    def _new_consumer(self) -> Consumer:
        return Consumer(
            consumer_config(
                self.settings, self.group_id, **{"client.id": f"ragstream-{self.stage.name}"}
            )
        )

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # --- lifecycle -------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close."""
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
        self._subscribe()
        last_work = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.heartbeat = time.monotonic()
                if (
                    max_messages is not None
                    and self.stats.processed + self.stats.failed >= max_messages
                ):
                    break
                batch = self._next_batch()
                self._refresh_lag()
                if not batch:
                    if idle_timeout_s is not None and time.monotonic() - last_work > idle_timeout_s:
                        break
                    self._unstall()
                    continue
                self._last_read = time.monotonic()
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
            self.consumer.close()  # commits the stored offsets and leaves the group
        finally:
            self._executor.shutdown(wait=False)
            if self.health is not None:
                self.health.stop()
            log.info("stopped", stage=self.stage.name, **self.stats.__dict__)

    def _unstall(self) -> None:
        """Rebuild a consumer that reads nothing while its partitions hold unread messages.

        After a broker restart the client can keep its assignment yet never fetch
        again (it heartbeats, so the group sees a healthy member). Closing it
        commits what was finished; a new one joins and reads from there.
        """
        now = time.monotonic()
        stall = self.settings.consumer_stall_s
        if now - self._last_read < stall or now - self._stall_checked < stall:
            return
        self._stall_checked = now
        unread = self._unread()
        if not unread:
            return
        log.warning(
            "consumer_stalled",
            stage=self.stage.name,
            idle_s=round(now - self._last_read, 1),
            unread=unread,
        )
        metrics.CONSUMER_REBUILDS.labels(self.stage.name).inc()
        self.stats.rebuilt_consumers += 1
        self._carry = []
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("close_failed", stage=self.stage.name, error=str(exc))
        self._assigned = set()
        self.consumer = self._new_consumer()
        self._subscribe()
        self._last_read = time.monotonic()

    def _unread(self) -> dict[int, int]:
        """Unread messages per assigned partition, from the broker (not the client's cache)."""
        assignment = self.consumer.assignment()
        if not assignment:
            return {}
        try:
            committed = self.consumer.committed(assignment, timeout=10)
            positions = {tp.partition: tp.offset for tp in self.consumer.position(assignment)}
            unread = {}
            for tp in committed:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                read = max(positions.get(tp.partition, -1), tp.offset)
                read = read if read >= 0 else low
                if high > read:
                    unread[tp.partition] = high - read
        except KafkaException as exc:  # the broker is away: nothing to conclude yet
            log.info("stall_check_failed", stage=self.stage.name, error=str(exc)[:300])
            return {}
        return unread

    # --- rebalance -------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("assigned", stage=self.stage.name, partitions=[p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._assigned -= gone
        self._revoked_during_batch |= gone
        self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in gone]
        try:  # commit the finished work of the partitions we hand over
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit_on_revoke_failed", error=str(exc))
        log.info("revoked", stage=self.stage.name, partitions=[p.partition for p in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._assigned -= gone
        self._revoked_during_batch |= gone
        self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in gone]
        log.warning(
            "partitions_lost", stage=self.stage.name, partitions=[p.partition for p in partitions]
        )

    # --- polling ---------------------------------------------------------
    def _next_batch(self) -> list[Message]:
        """The first message as soon as it arrives, then whatever is already fetched.

        No waiting to fill a batch by default: under load, messages that arrive
        while a batch is processed form the next one (``max_batch_wait_s`` adds
        a linger for backends that want fuller batches).
        """
        limit = self.batch_size
        batch, self._carry = self._carry[:limit], self._carry[limit:]
        if not batch:
            first = self.consumer.poll(self.settings.poll_timeout_s)
            if first is None:
                return []
            error = first.error()
            if error is not None:
                self._on_consumer_error(error)
                return []
            batch.append(first)
        linger_until = time.monotonic() + self.settings.max_batch_wait_s
        timeout = 0.0
        while len(batch) < limit:
            messages = self.consumer.consume(limit - len(batch), timeout)
            for msg in messages:
                error = msg.error()
                if error is not None:
                    self._on_consumer_error(error)
                    continue
                batch.append(msg)
            timeout = linger_until - time.monotonic()
            if not messages and timeout <= 0:
                break
            timeout = max(timeout, 0.0)
        return batch

    def _on_consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer_error", stage=self.stage.name, error=error.str())

    def _while_polling(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread while this thread keeps the consumer alive.

        A short batch just runs: the fetcher keeps prefetching the next one. A
        batch still running after ``PAUSE_AFTER_S`` has the consumer polled
        (rebalances, max.poll.interval) until it ends, taking the next batch
        meanwhile: up to a batch of messages is carried over, then the
        partitions are paused, so the next batch starts the moment this one
        ends. Pausing every batch, or resuming with nothing in hand, would cost
        each batch up to a second: the fetcher notices a resume only on its
        next wake-up.
        """
        future: Future[T] = self._executor.submit(fn)
        if wait([future], timeout=PAUSE_AFTER_S).done:
            self.heartbeat = time.monotonic()
            return future.result()
        paused = False
        try:
            # Wake on the future, not on a poll timeout: the batch's end is not delayed.
            while not wait([future], timeout=0.05).done:
                self.heartbeat = time.monotonic()
                room = self.batch_size - len(self._carry)
                if room > 0 and not paused:
                    self._take(self.consumer.consume(room, 0))
                    continue
                if not paused:
                    self.consumer.pause(self.consumer.assignment())
                    paused = True
                msg = self.consumer.poll(0)
                if msg is not None:
                    self._take([msg])
            return future.result()
        finally:
            if paused:
                self.consumer.resume(self.consumer.assignment())

    def _take(self, messages: list[Message]) -> None:
        """Carry ``messages`` over to the next batch (errors are reported, not carried)."""
        for msg in messages:
            error = msg.error()
            if error is not None:
                self._on_consumer_error(error)
            else:
                self._carry.append(msg)

    # --- one batch -------------------------------------------------------
    def _handle(self, raw: list[Message]) -> None:
        started = time.monotonic()
        self._phases = dict.fromkeys(("stage_s", "commit_s", "publish_s"), 0.0)
        self._revoked_during_batch = set()
        batch = [self._decode(m) for m in raw]
        traced = [(_document(m), m.header(tracing.TRACEPARENT)) for m in batch]
        with tracing.batch_spans(self.stage.name, self.input_topic, traced) as self._trace:
            self._handle_decoded(batch, started)
        self._trace = None

    def _handle_decoded(self, batch: list[Incoming], started: float) -> None:
        """Steps 2-6 of the module docstring, with retries; spans are opened around it.

        A retryable error is retried for as long as a dependency is down. One that
        persists while the database and the broker answer is the batch's own: its
        messages are tried one by one, and one that still fails is dead-lettered.
        """
        backoff = self.settings.retry_backoff_initial_s
        attempt = 0
        give_up: RetriesExhausted | None = None
        while True:
            attempt += 1
            batch = [m for m in batch if (m.topic, m.partition) not in self._revoked_during_batch]
            if not batch:
                return
            try:
                self._while_polling(partial(self._process_and_commit, batch, give_up))
                break
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                if (
                    give_up is None
                    and attempt >= self.settings.max_batch_attempts
                    and self._dependencies_answer()
                ):
                    if len(batch) > 1:
                        for message in batch:
                            self._handle_decoded([message], time.monotonic())
                        return
                    give_up = RetriesExhausted(
                        f"still failing after {attempt} attempts while the database and the "
                        f"broker answer: {type(exc).__name__}: {str(exc)[:1000]}"
                    )
                    continue
                self.stats.retries += 1
                metrics.RETRIES.labels(self.stage.name).inc()
                log.warning(
                    "batch_retry",
                    stage=self.stage.name,
                    attempt=attempt,
                    backoff_s=round(backoff, 2),
                    error_class=type(exc).__name__,
                    error=str(exc)[:500],
                )
                if self._sleep_polling(backoff):
                    return  # stopping: nothing stored, the batch will be redelivered
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)
        self._store_offsets(batch)
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

    def _decode(self, msg: Message) -> Incoming:
        key, value = msg.key(), msg.value()
        incoming = Incoming(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=key.encode() if isinstance(key, str) else key,
            value=value.encode() if isinstance(value, str) else value,
            headers=_headers(msg),
        )
        with contextlib.suppress(UndecodableEvent):  # a failure of this message, handled later
            incoming.event = self.ctx.codec.decode(incoming.value, self.stage.consumes)  # type: ignore[arg-type]
        return incoming

    def _process_and_commit(
        self, batch: list[Incoming], give_up: RetriesExhausted | None = None
    ) -> None:
        if give_up is not None:  # one message, retried in vain: dead-letter it
            out = StageOutput(failures=[Failure(m, give_up) for m in batch if m.value is not None])
            self._commit(out)
        else:
            good = [m for m in batch if m.event is not None]
            # A null value is a tombstone (a deleted document's keys): nothing to do, not poison.
            failures = [
                Failure(m, self._undecodable(m))
                for m in batch
                if m.event is None and m.value is not None
            ]
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

    def _dependencies_answer(self) -> bool:
        """Whether the database and the broker both answer right now."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            self.consumer.list_topics(self.input_topic, timeout=5)
        except Exception as exc:  # any failure means: not the message's fault, keep retrying
            log.info("dependency_down", stage=self.stage.name, error=str(exc)[:300])
            return False
        return True

    def _undecodable(self, message: Incoming) -> RagstreamError:
        try:
            self.ctx.codec.decode(message.value, self.stage.consumes)  # type: ignore[arg-type]
        except RagstreamError as exc:
            return exc
        return UndecodableEvent("message could not be decoded")

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
            self._commit(out)
            self._phases["commit_s"] += time.monotonic() - began
            return out
        except (PermanentError, DBAPIError) as exc:
            error = _as_permanent(exc)
            if error is None:
                raise
            if len(batch) == 1:
                out = StageOutput(failures=[Failure(batch[0], error)])
                self._commit(out)
                return out
        out = StageOutput()
        for message in batch:
            out.extend(self._work([message]))
        return out

    def _commit(self, out: StageOutput) -> None:
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
        attempt = int(m.header(ATTEMPT_HEADER) or b"1")
        kept: list[tuple[str, str | bytes | None]] = [
            (k, v)
            for k, v in m.headers
            if not k.startswith("ragstream-dlq-") and k != ATTEMPT_HEADER
        ]
        return [
            *kept,
            ("ragstream-dlq-origin-topic", m.topic.encode()),
            ("ragstream-dlq-origin-partition", str(m.partition).encode()),
            ("ragstream-dlq-origin-offset", str(m.offset).encode()),
            ("ragstream-dlq-stage", self.stage.name.encode()),
            ("ragstream-dlq-error-class", failure.error.error_class.encode()),
            ("ragstream-dlq-error-message", failure.error.message[:4000].encode()),
            ("ragstream-dlq-document-id", str(m.document_id or "").encode()),
            (ATTEMPT_HEADER, str(attempt).encode()),
        ]

    def _store_offsets(self, batch: list[Incoming]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            key = (m.topic, m.partition)
            last[key] = max(last.get(key, -1), m.offset)
        offsets = [
            TopicPartition(topic, partition, offset + 1)
            for (topic, partition), offset in last.items()
            if (topic, partition) in self._assigned
            and (topic, partition) not in self._revoked_during_batch
        ]
        if offsets:
            self.consumer.store_offsets(offsets=offsets)

    def _sleep_polling(self, seconds: float) -> bool:
        """Back off while staying in the group; True if asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        try:
            while time.monotonic() < deadline:
                if self._stopping.is_set():
                    return True
                msg = self.consumer.poll(0.1)
                self.heartbeat = time.monotonic()
                if msg is not None and msg.error() is None:
                    self._carry.append(msg)
        finally:
            self.consumer.resume(self.consumer.assignment())
        return False


def _by_model(
    rows: list[tuple[type[Any], dict[str, Any]]],
) -> dict[type[Any], list[dict[str, Any]]]:
    grouped: dict[type[Any], list[dict[str, Any]]] = {}
    for model, row in rows:
        grouped.setdefault(model, []).append(row)
    return grouped


def _document(m: Incoming) -> str | None:
    return str(m.document_id) if m.document_id else None


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v or b"") for k, v in pairs]


def _as_permanent(exc: Exception) -> PermanentError | None:
    if isinstance(exc, PermanentError):
        return exc
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if isinstance(exc, DataError | IntegrityError) or sqlstate[:2] in ("22", "23"):
        return RejectedByDatabase(f"database refused the row: {getattr(exc, 'orig', exc)}")
    return None


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, RagstreamError):
        return exc.retryable
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, KafkaException | DependencyUnavailable | ConnectionError | TimeoutError)
