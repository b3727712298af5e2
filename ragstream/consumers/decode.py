"""Records to events: what the runner's step 1 makes of each consumed record.

A record whose bytes are not an event of the stage's contract, or whose event
names an id that is not a UUID, is a failure of its own whatever the stage does;
a retryable error of the codec (its Schema Registry down) propagates, and the
record is decoded again when the batch is retried.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Message

from ragstream.consumers.base import Incoming
from ragstream.errors import (
    InvalidEvent,
    PermanentError,
    UndecodableEvent,
    as_permanent,
    is_retryable,
)
from ragstream.schemas.codec import Codec
from ragstream.schemas.events import Event

UUID_FIELDS = ("document_id", "job_id", "chunk_id", "embedding_id")
"""Event fields that must hold a UUID: one that does not makes the event invalid."""


def incoming(msg: Message) -> Incoming:
    """A consumed record, not yet decoded."""
    key, value = msg.key(), msg.value()
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return Incoming(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=key.encode() if isinstance(key, str) else key,
        value=value.encode() if isinstance(value, str) else value,
        headers=[(k, v.encode() if isinstance(v, str) else v or b"") for k, v in pairs],
    )


def decode(m: Incoming, codec: Codec, consumes: type[Event]) -> PermanentError | None:
    """Set ``m.event``, or return why ``m`` is a failure; a retryable error propagates.

    An event whose document or job id is not a UUID is left unset: there is no
    document to mark failed.
    """
    try:
        event = codec.decode(m.value, consumes)  # type: ignore[arg-type]
    except Exception as exc:
        if is_retryable(exc):
            raise
        return as_permanent(exc) or UndecodableEvent(f"{type(exc).__name__}: {str(exc)[:1000]}")
    wrong = wrong_ids(event)
    if wrong and any(name in wrong for name in ("document_id", "job_id")):
        return InvalidEvent(wrong)
    m.event = event
    return InvalidEvent(wrong) if wrong else None


def wrong_ids(event: object) -> str | None:
    """What is wrong with the event's ids, if anything."""
    for name in UUID_FIELDS:
        raw = getattr(event, name, None)
        if raw is None:
            continue
        try:
            uuid.UUID(raw)
        except (ValueError, TypeError, AttributeError):
            return f"{name} {str(raw)[:100]!r} is not a UUID"
    return None
