"""The dead-letter contract: headers to values and back, and records of today's format."""

from __future__ import annotations

import uuid

from ragstream import deadletter
from ragstream.deadletter import DeadLetter, dead_letter_headers, replay_headers

DOC = uuid.UUID("6f1c2f4e-3d1b-4c55-9a8e-0b7f3c2a1d00")

# A DLQ record's headers exactly as the runner has written them so far (spelled out
# here on purpose: this is the wire format that stays readable).
TODAY = [
    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("ragstream-dlq-origin-topic", b"p.documents.uploaded"),
    ("ragstream-dlq-origin-partition", b"3"),
    ("ragstream-dlq-origin-offset", b"41"),
    ("ragstream-dlq-stage", b"parse"),
    ("ragstream-dlq-error-class", b"CorruptDocument"),
    ("ragstream-dlq-error-message", b"not a PDF: \xc3\xa9"),
    ("ragstream-dlq-document-id", str(DOC).encode()),
    ("ragstream-attempt", b"2"),
]


def test_reads_a_record_written_in_todays_format() -> None:
    letter = DeadLetter.from_headers(TODAY)
    assert letter == DeadLetter(
        origin_topic="p.documents.uploaded",
        origin_partition=3,
        origin_offset=41,
        stage="parse",
        error_class="CorruptDocument",
        error_message="not a PDF: é",
        document_id=DOC,
        attempt=2,
    )
    assert letter.origin == "p.documents.uploaded:3:41"
    assert DeadLetter.from_headers(dict(TODAY)) == letter  # a mapping reads the same


def test_round_trip_writes_todays_bytes() -> None:
    letter = DeadLetter.from_headers(TODAY)
    assert letter.to_headers() == TODAY[1:]
    assert DeadLetter.from_headers(letter.to_headers()) == letter
    # The runner's DLQ record: the original record's own headers first, old letters dropped.
    again = dead_letter_headers(TODAY, letter)
    assert again == TODAY


def test_missing_or_odd_headers_read_as_unknown() -> None:
    letter = DeadLetter.from_headers([("ragstream-dlq-document-id", b"None")])
    assert letter == DeadLetter(None, None, None, None, None, "", None, 1)
    assert letter.origin == "?:?:?"
    odd = DeadLetter.from_headers(
        [("ragstream-dlq-document-id", b"not-a-uuid"), ("ragstream-attempt", b"x")]
    )
    assert odd.document_id is None and odd.attempt == 1


def test_long_error_message_is_cut() -> None:
    letter = DeadLetter("t", 0, 0, "chunk", "E", "x" * 10_000, None)
    (message,) = [v for k, v in letter.to_headers() if k == deadletter.ERROR_MESSAGE]
    assert message == b"x" * deadletter.MAX_ERROR_MESSAGE


def test_replay_headers_keep_the_record_s_own_and_count_the_attempt() -> None:
    replayed = [*TODAY, ("ragstream-replayed-from", b"old:0:1")]
    letter = DeadLetter.from_headers(replayed)
    assert replay_headers(replayed, letter, "p.documents.uploaded.dlq:0:7") == [
        TODAY[0],
        ("ragstream-attempt", b"3"),
        ("ragstream-replayed-from", b"p.documents.uploaded.dlq:0:7"),
    ]
    # A replayed record that fails again keeps where it was replayed from.
    assert ("ragstream-replayed-from", b"old:0:1") in dead_letter_headers(replayed, letter)
