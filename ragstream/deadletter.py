"""The dead-letter contract: what a DLQ record's headers say, and their one spelling.

A stage's DLQ (:func:`ragstream.topology.dlq`) holds the original record (key,
value and headers) plus the headers below, written by the stage runner, read by
``ragstream dlq`` and by the monitor. Every value is UTF-8 text; numbers are in
decimal. A record without a header reads as its default (``?``, empty, attempt 1),
so records of any earlier version stay readable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PREFIX = "ragstream-dlq-"
"""Every header the runner adds to a dead letter starts so (the attempt aside)."""
ORIGIN_TOPIC = PREFIX + "origin-topic"
ORIGIN_PARTITION = PREFIX + "origin-partition"
ORIGIN_OFFSET = PREFIX + "origin-offset"
STAGE = PREFIX + "stage"
ERROR_CLASS = PREFIX + "error-class"
ERROR_MESSAGE = PREFIX + "error-message"
DOCUMENT_ID = PREFIX + "document-id"
ATTEMPT = "ragstream-attempt"
"""How many times the record has been tried; travels with a replayed record too."""
REPLAYED_FROM = "ragstream-replayed-from"
"""On a record sent back by DLQ replay: the ``<topic>:<partition>:<offset>`` it came from."""

MAX_ERROR_MESSAGE = 4000
"""Characters of the error message kept in its header."""

Headers = list[tuple[str, str | bytes | None]]
HeaderPairs = Iterable[tuple[str, bytes]] | Mapping[str, bytes]


def _pairs(headers: HeaderPairs) -> Iterable[tuple[str, bytes]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def _text(headers: HeaderPairs, name: str) -> str | None:
    for key, value in _pairs(headers):
        if key == name:
            return (value or b"").decode("utf-8", "replace")
    return None


def attempt_of(headers: HeaderPairs) -> int:
    """The attempt a record's headers carry (1 when none, or not a number)."""
    raw = _text(headers, ATTEMPT)
    return int(raw) if raw and raw.isdigit() else 1


def passed_on(headers: HeaderPairs) -> Headers:
    """A record's headers without the dead-letter ones and the attempt (the others are kept)."""
    return [(k, v) for k, v in _pairs(headers) if not k.startswith(PREFIX) and k != ATTEMPT]


@dataclass(frozen=True)
class DeadLetter:
    """Why and from where a record was dead-lettered: the headers, as values."""

    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    stage: str | None
    error_class: str | None
    error_message: str
    document_id: uuid.UUID | None
    attempt: int = 1

    @property
    def origin(self) -> str:
        """``topic:partition:offset`` of the original record, ``?`` for what is unknown."""
        return ":".join(
            "?" if part is None else str(part)
            for part in (self.origin_topic, self.origin_partition, self.origin_offset)
        )

    def to_headers(self) -> Headers:
        """The runner's headers, in its order (appended to the record's own)."""
        return [
            (ORIGIN_TOPIC, (self.origin_topic or "").encode()),
            (ORIGIN_PARTITION, _number(self.origin_partition)),
            (ORIGIN_OFFSET, _number(self.origin_offset)),
            (STAGE, (self.stage or "").encode()),
            (ERROR_CLASS, (self.error_class or "").encode()),
            (ERROR_MESSAGE, self.error_message[:MAX_ERROR_MESSAGE].encode()),
            (DOCUMENT_ID, str(self.document_id or "").encode()),
            (ATTEMPT, str(self.attempt).encode()),
        ]

    @classmethod
    def from_headers(cls, headers: HeaderPairs) -> DeadLetter:
        """Read the headers of a DLQ record; a missing or unreadable one reads as unknown."""
        pairs = list(_pairs(headers))
        return cls(
            origin_topic=_text(pairs, ORIGIN_TOPIC) or None,
            origin_partition=_int(_text(pairs, ORIGIN_PARTITION)),
            origin_offset=_int(_text(pairs, ORIGIN_OFFSET)),
            stage=_text(pairs, STAGE) or None,
            error_class=_text(pairs, ERROR_CLASS) or None,
            error_message=_text(pairs, ERROR_MESSAGE) or "",
            document_id=_uuid(_text(pairs, DOCUMENT_ID)),
            attempt=attempt_of(pairs),
        )


def dead_letter_headers(record_headers: HeaderPairs, letter: DeadLetter) -> Headers:
    """What the DLQ record carries: the record's own headers, then the letter's."""
    return [*passed_on(record_headers), *letter.to_headers()]


def replay_headers(record_headers: HeaderPairs, letter: DeadLetter, letter_id: str) -> Headers:
    """What a replayed record carries: its own headers, the next attempt, where it came from."""
    return [
        *((k, v) for k, v in passed_on(record_headers) if k != REPLAYED_FROM),
        (ATTEMPT, str(letter.attempt + 1).encode()),
        (REPLAYED_FROM, letter_id.encode()),
    ]


def _number(value: int | None) -> bytes:
    return b"" if value is None else str(value).encode()


def _int(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw and raw != "None" else None
    except ValueError:
        return None
