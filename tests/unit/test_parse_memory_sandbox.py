"""The sandbox takes a document in pieces and gives a large parsed JSON back in a file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragstream.documents import ParsedPayload, SpooledPayload
from ragstream.errors import MissingBlob, UnsupportedDocument
from ragstream.parsing import parse_bytes
from ragstream.parsing.sandbox import parse_payload, parse_spooled


class Pieces:
    """A document as a sized iterable of pieces, like a stored blob read in slices."""

    def __init__(self, data: bytes, piece: int, fail_after: int | None = None) -> None:
        self.data, self.piece, self.fail_after = data, piece, fail_after

    @property
    def size(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[bytes]:
        for n, start in enumerate(range(0, len(self.data), self.piece)):
            if n == self.fail_after:
                raise MissingBlob("blob x is corrupt: its content has another hash")
            yield self.data[start : start + self.piece]


TEXT = "\n\n".join(f"Paragraph {i}: naïve Größe 日本語\r\nsecond line" for i in range(20_000))
DATA = TEXT.encode()


def test_a_large_reply_is_spooled_to_a_file_with_the_same_json() -> None:
    expected = parse_bytes(DATA, "big.txt")
    parsed = parse_spooled(
        Pieces(DATA, 100_000), filename="big.txt", timeout_s=60, memory_mb=1024, spool_above=1000
    )
    assert isinstance(parsed, SpooledPayload)
    with parsed:
        parsed.file.seek(0)
        assert parsed.file.read() == expected.to_json()
        assert parsed.size == len(expected.to_json())
        assert parsed.block_count == len(expected.blocks)
        assert (parsed.content_type, parsed.parser) == (expected.content_type, expected.parser)
        assert parsed.load() == ParsedPayload.of(expected)
    assert parsed.file.closed


def test_a_reply_under_the_threshold_stays_in_memory() -> None:
    small = DATA[:5000]
    expected = ParsedPayload.of(parse_bytes(small, "small.txt"))
    spooled = parse_spooled(
        Pieces(small, 1000), filename="small.txt", timeout_s=60, memory_mb=1024, spool_above=10**9
    )
    assert spooled == expected
    assert parse_payload(
        Pieces(small, 999), filename="small.txt", timeout_s=60, memory_mb=1024
    ) == (expected)


def test_an_error_while_reading_the_source_is_raised() -> None:
    with pytest.raises(MissingBlob, match="corrupt"):
        parse_spooled(
            Pieces(DATA, 100_000, fail_after=3),
            filename="big.txt",
            timeout_s=60,
            memory_mb=1024,
            spool_above=1000,
        )


def test_spooled_errors_come_back_as_before() -> None:
    with pytest.raises(UnsupportedDocument):
        parse_spooled(
            Pieces(b"\x00\x01\x02binary" * 1000, 500),
            filename="x.bin",
            timeout_s=60,
            memory_mb=1024,
            spool_above=0,
        )
