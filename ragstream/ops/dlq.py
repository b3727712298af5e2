"""The dead-letter topics: what is in them, one message in full, and sending messages back.

A stage's DLQ (``<input topic>.dlq``) holds the original record with the
runner's dead-letter headers (origin, stage, error class and message, attempt;
spelled once, in :mod:`ragstream.deadletter`). Replay re-publishes a message to
its origin topic with the attempt incremented; one whose next attempt would
exceed ``dlq_max_attempts`` stays where it is, so nothing loops for ever.

What replay has handled is kept in a consumer group per DLQ: its committed
offset, and in the commit's metadata the handled offsets above it (those past
a message that an ``--error-class`` filter left alone). A second replay
therefore never sends the same message twice, and a filtered one stays
pending for a later replay.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from sqlalchemy import Connection, Engine, select

from ragstream import state, topology
from ragstream.db import repository
from ragstream.db.models import Document
from ragstream.deadletter import DeadLetter, replay_headers
from ragstream.errors import DependencyUnavailable, RagstreamError
from ragstream.kafka import admin_client, consumer_config
from ragstream.ops import groups
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import Codec
from ragstream.settings import Settings
from ragstream.state import DocumentStatus

_LEDGER_PREFIX = "ragstream-dlq-replay/1 "
_MAX_LEDGER_RANGES = 300  # keeps the commit metadata far below offset.metadata.max.bytes
_READ_STALL_S = 30.0


class BadDeadLetterId(RagstreamError):
    """A DLQ message id is ``<topic>:<partition>:<offset>`` of a message that exists."""


@dataclass(frozen=True)
class DlqRecord:
    """One DLQ record, its dead-letter headers read as a :class:`DeadLetter`."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @cached_property
    def letter(self) -> DeadLetter:
        return DeadLetter.from_headers(self.headers)

    @property
    def stage(self) -> str:
        return self.letter.stage or "?"

    @property
    def error_class(self) -> str:
        return self.letter.error_class or "?"

    @property
    def error_message(self) -> str:
        return self.letter.error_message

    @property
    def origin_topic(self) -> str | None:
        return self.letter.origin_topic

    @property
    def origin(self) -> str:
        return self.letter.origin

    @property
    def document_id(self) -> uuid.UUID | None:
        return self.letter.document_id

    @property
    def attempt(self) -> int:
        return self.letter.attempt

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "stage": self.stage,
            "error_class": self.error_class,
            "error_message": self.error_message,
            "origin": self.origin,
            "document_id": str(self.document_id) if self.document_id else None,
            "attempt": self.attempt,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "value_bytes": len(self.value or b""),
            "headers": {k: v.decode("utf-8", "replace") for k, v in self.headers},
        }


@dataclass(frozen=True)
class DlqTopic:
    stage: str
    topic: str  # the DLQ
    origin: str  # the stage's input topic, where replay sends messages
    group: str  # the consumer group that remembers what replay handled


REEMBED = "reembed"
"""The DLQ of ``ragstream reembed``'s shadow builds, listed beside the stages' (its records
replay to the embed stage's input)."""


def dlq_topics(settings: Settings, stage: str | None = None) -> list[DlqTopic]:
    names = (*topology.STAGE_NAMES, REEMBED)
    if stage is not None and stage not in names:
        raise BadDeadLetterId(f"unknown stage {stage!r}; one of {', '.join(names)}")
    found = [
        DlqTopic(
            stage=spec.name,
            topic=settings.topic(topology.dlq(spec.input_topic)),
            origin=settings.topic(spec.input_topic),
            group=f"{settings.topic_prefix}ragstream-dlq-replay-{spec.name}",
        )
        for spec in topology.STAGES.values()
    ]
    found.append(
        DlqTopic(
            stage=REEMBED,
            topic=settings.topic(topology.REEMBED_DLQ),
            origin=settings.topic(topology.CHUNKED),
            group=f"{settings.topic_prefix}ragstream-dlq-replay-{REEMBED}",
        )
    )
    return [d for d in found if stage is None or d.stage == stage]


# --- reading ------------------------------------------------------------------


def _reader(settings: Settings) -> Consumer:
    """A consumer that is assigned partitions by hand and never commits."""
    return Consumer(
        consumer_config(
            settings,
            f"{settings.topic_prefix}ragstream-dlq-reader",
            **{"enable.auto.commit": False, "client.id": "ragstream-dlq"},
        )
    )


def read(
    settings: Settings,
    topic: str,
    start: Mapping[int, int] | None = None,
    *,
    only: int | None = None,
) -> Generator[DlqRecord, None, None]:
    """Records of ``topic`` (or of partition ``only``) from ``start`` (default: the first) to
    the end as of now."""
    admin = admin_client(settings)
    parts = groups.partitions(admin, topic) if only is None else [only]
    ends = groups.watermarks(admin, topic, parts)
    begin = {p: max((start or {}).get(p, low), low) for p, (low, _) in ends.items()}
    todo = {p: high for p, (_, high) in ends.items() if begin[p] < high}
    if not todo:
        return
    consumer = _reader(settings)
    try:
        consumer.assign([TopicPartition(topic, p, begin[p]) for p in todo])
        last_progress = time.monotonic()
        while todo:
            batch = consumer.consume(500, 1.0)
            if not batch:
                # Offsets without a record (transaction markers) end a partition too.
                for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                    if tp.offset >= todo[tp.partition]:
                        del todo[tp.partition]
                if todo and time.monotonic() - last_progress > _READ_STALL_S:
                    raise DependencyUnavailable(f"reading {topic} stalled; is the broker up?")
            for msg in batch:
                if msg.error() is not None:
                    continue
                last_progress = time.monotonic()
                letter = _letter(msg)
                end = todo.get(letter.partition)
                if end is None or letter.offset >= end:
                    continue
                if letter.offset == end - 1:
                    del todo[letter.partition]
                yield letter
    finally:
        consumer.close()


def _letter(msg: Message) -> DlqRecord:
    key, value = msg.key(), msg.value()
    return DlqRecord(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp_ms=msg.timestamp()[1],
        key=key.encode() if isinstance(key, str) else key,
        value=value.encode() if isinstance(value, str) else value,
        headers=tuple(
            (k, v.encode() if isinstance(v, str) else v or b"") for k, v in _pairs(msg.headers())
        ),
    )


def _pairs(raw: Any) -> list[tuple[str, Any]]:
    if not raw:
        return []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def parse_id(text: str) -> tuple[str, int, int]:
    topic, _, rest = text.strip().partition(":")
    partition, _, offset = rest.partition(":")
    if not (topic and partition.isdigit() and offset.isdigit()):
        raise BadDeadLetterId(f"{text!r} is not <topic>:<partition>:<offset>")
    return topic, int(partition), int(offset)


def show(settings: Settings, message_id: str) -> DlqRecord:
    topic, partition, offset = parse_id(message_id)
    admin = admin_client(settings)
    if partition not in groups.partitions(admin, topic):
        raise BadDeadLetterId(f"{topic} has no partition {partition}")
    low, high = groups.watermarks(admin, topic, [partition])[partition]
    if not low <= offset < high:
        raise BadDeadLetterId(
            f"{topic}[{partition}] holds offsets {low} to {high - 1}, not {offset}"
        )
    letters = read(settings, topic, {partition: offset}, only=partition)
    try:
        found = next(letters, None)
    finally:
        letters.close()
    if found is None or found.offset != offset:
        raise BadDeadLetterId(f"no message at {message_id}")
    return found


def decoded(codec: Codec, letter: DlqRecord) -> tuple[str, dict[str, Any]] | None:
    """The event's schema name and fields, or None for a message that is not an event."""
    try:
        return codec.decode_record(letter.value or b"")
    except RagstreamError:
        return None


# --- what replay has handled --------------------------------------------------


@dataclass
class Ledger:
    """What replay handled on one partition: every offset below ``committed``, and ``above``."""

    committed: int
    low: int = 0
    above: set[int] = field(default_factory=set)
    _ranges: int = 0

    @classmethod
    def load(cls, committed: int | None, metadata: str, low: int) -> Ledger:
        ledger = cls(max(committed or 0, low), low)
        if metadata.startswith(_LEDGER_PREFIX):
            for part in metadata[len(_LEDGER_PREFIX) :].split(","):
                first, _, last = part.partition("-")
                if first.isdigit():
                    ledger.above.update(range(int(first), int(last or first) + 1))
        ledger._settle()
        ledger._ranges = len(ledger._encode_ranges())
        return ledger

    @property
    def count(self) -> int:
        """Messages handled so far (of those still in the topic)."""
        return self.committed - self.low + len(self.above)

    def handled(self, offset: int) -> bool:
        return offset < self.committed or offset in self.above

    def can_add(self, offset: int) -> bool:
        """False when remembering ``offset`` would make the commit metadata too long."""
        if offset == self.committed or offset - 1 in self.above:
            return True
        if self._ranges >= _MAX_LEDGER_RANGES:
            self._ranges = len(self._encode_ranges())
        return self._ranges < _MAX_LEDGER_RANGES

    def add(self, offset: int) -> None:
        if offset != self.committed and offset - 1 not in self.above:
            self._ranges += 1
        self.above.add(offset)
        self._settle()

    def _settle(self) -> None:
        self.above = {o for o in self.above if o >= self.committed}
        while self.committed in self.above:
            self.above.discard(self.committed)
            self.committed += 1

    def _encode_ranges(self) -> list[str]:
        out: list[str] = []
        run: list[int] = []
        for offset in sorted(self.above):
            if run and offset != run[-1] + 1:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
                run = []
            run.append(offset)
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        return out

    def metadata(self) -> str:
        return _LEDGER_PREFIX + ",".join(self._encode_ranges()) if self.above else ""


def _ledgers(settings: Settings, dlq: DlqTopic) -> dict[int, Ledger]:
    admin = admin_client(settings)
    states = groups.group_state(admin, dlq.group, dlq.topic)
    return {s.partition: Ledger.load(s.committed, s.metadata, s.low) for s in states}


def _save(settings: Settings, dlq: DlqTopic, ledgers: Mapping[int, Ledger]) -> None:
    consumer = Consumer(consumer_config(settings, dlq.group, **{"enable.auto.commit": False}))
    try:
        offsets = [
            TopicPartition(dlq.topic, p, ledger.committed, metadata=ledger.metadata())
            for p, ledger in sorted(ledgers.items())
        ]
        for tp in consumer.commit(offsets=offsets, asynchronous=False) or []:
            if tp.error is not None:
                raise KafkaException(tp.error)
    finally:
        consumer.close()


# --- listing ------------------------------------------------------------------


@dataclass
class DlqSummary:
    dlq: DlqTopic
    total: int = 0
    pending: int = 0  # not handled by any replay yet
    exhausted: int = 0  # pending, but replay would keep them: attempts used up
    by_class: Counter[str] = field(default_factory=Counter)
    newest: list[DlqRecord] = field(default_factory=list)


def summarize(settings: Settings, stage: str | None = None, newest: int = 5) -> list[DlqSummary]:
    out = []
    for dlq in dlq_topics(settings, stage):
        ledgers = _ledgers(settings, dlq)
        summary = DlqSummary(dlq)
        letters = []
        for letter in read(settings, dlq.topic):
            summary.total += 1
            summary.by_class[letter.error_class] += 1
            if not ledgers[letter.partition].handled(letter.offset):
                summary.pending += 1
                summary.exhausted += letter.attempt + 1 > settings.dlq_max_attempts
            letters.append(letter)
        letters.sort(key=lambda m: (m.timestamp_ms, m.partition, m.offset), reverse=True)
        summary.newest = letters[:newest]
        out.append(summary)
    return out


# --- replay -------------------------------------------------------------------


@dataclass
class ReplayOutcome:
    dlq: DlqTopic
    replayed: list[DlqRecord] = field(default_factory=list)
    kept: list[DlqRecord] = field(default_factory=list)  # next attempt would exceed the maximum
    filtered: int = 0  # pending, not of the requested error class
    already: int = 0  # handled by an earlier replay
    deferred: int = 0  # left for the next run so the ledger stays small
    documents_reopened: int = 0


def replay(
    settings: Settings,
    engine: Engine,
    codec: Codec,
    *,
    stage: str | None = None,
    error_class: str | None = None,
) -> list[ReplayOutcome]:
    """Re-publish pending DLQ messages to their origin topics, attempt + 1.

    A failed document whose failure is the replayed message's is reopened first
    (reset to the status before the stage, same job), so the message can move it
    again. The handled offsets are committed only after every re-published
    message is acknowledged: a crash in between re-sends, it never skips.
    """
    outcomes = []
    producer = EventProducer(settings)
    try:
        for dlq in dlq_topics(settings, stage):
            outcomes.append(_replay_one(settings, engine, codec, producer, dlq, error_class))
    finally:
        producer.close()
    return outcomes


def _replay_one(
    settings: Settings,
    engine: Engine,
    codec: Codec,
    producer: EventProducer,
    dlq: DlqTopic,
    error_class: str | None,
) -> ReplayOutcome:
    outcome = ReplayOutcome(dlq)
    ledgers = _ledgers(settings, dlq)
    outcome.already = sum(ledger.count for ledger in ledgers.values())
    start = {p: ledger.committed for p, ledger in ledgers.items()}
    handled: list[DlqRecord] = []
    for letter in read(settings, dlq.topic, start):
        ledger = ledgers[letter.partition]
        if ledger.handled(letter.offset):
            continue
        if error_class is not None and letter.error_class != error_class:
            outcome.filtered += 1
            continue
        if not ledger.can_add(letter.offset):
            outcome.deferred += 1
            continue
        handled.append(letter)
        ledger.add(letter.offset)
        if letter.attempt + 1 > settings.dlq_max_attempts:
            outcome.kept.append(letter)
            continue
        with engine.begin() as conn:
            outcome.documents_reopened += _reopen(conn, codec, letter)
        producer.send(
            letter.origin_topic or dlq.origin,
            key=letter.key,
            value=letter.value,
            headers=replay_headers(letter.headers, letter.letter, letter.id),
        )
        outcome.replayed.append(letter)
    if handled:
        producer.wait()
        _save(settings, dlq, ledgers)
    return outcome


def _reopen(conn: Connection, codec: Codec, letter: DlqRecord) -> bool:
    """Reset the document this message failed, so that its replay can move it again.

    Only when the document is ``failed`` at this message's stage, in the job the
    message belongs to: a document reprocessed since, or failed elsewhere, is
    left alone. ``finalize`` has no reset (its input is the vectors); such a
    document stays failed until reprocessed from ``embed``.
    """
    document_id, stage = letter.document_id, letter.stage
    if document_id is None or stage not in state.REPROCESS_RESETS_TO:
        return False
    found = decoded(codec, letter)
    job = found[1].get("job_id") if found is not None else None
    row = conn.execute(
        select(Document.status, Document.failed_stage, Document.current_job_id)
        .where(Document.id == document_id)
        .with_for_update()
    ).one_or_none()
    if (
        row is None
        or row.status != DocumentStatus.FAILED.value
        or row.failed_stage != stage
        or row.current_job_id is None
        or (job is not None and str(row.current_job_id) != str(job))
    ):
        return False
    repository.reset_for_reprocess(conn, document_id, row.current_job_id, cast(state.Stage, stage))
    return True
