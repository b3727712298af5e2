"""Blobs read and written in slices against the real PostgreSQL: the same bytes, stored once."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, insert, select, text

from ragstream.db import blobs
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob
from ragstream.errors import MissingBlob
from ragstream.settings import Settings

pytestmark = pytest.mark.integration

SLICE = 64 * 1024


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


def _content(size: int) -> bytes:
    # Half random, half repetitive: compressible, yet no slice looks like another.
    random = os.urandom(size // 2)
    return random + (b"abc\x00\xff\\x\n" * (size // 8 + 1))[: size - len(random)]


def _put(engine: Engine, data: bytes, slice_bytes: int = SLICE) -> str:
    with engine.begin() as conn:
        return blobs.put_file(conn, io.BytesIO(data), len(data), slice_bytes=slice_bytes)


def _rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Blob)).scalar_one())


@pytest.mark.parametrize("size", [0, 1, SLICE - 1, SLICE, SLICE + 1, 5 * SLICE + 123])
def test_a_streamed_write_stores_the_exact_bytes_under_their_hash(
    engine: Engine, size: int
) -> None:
    data = _content(size)
    sha = _put(engine, data)
    assert sha == hashlib.sha256(data).hexdigest()
    with engine.connect() as conn:
        row = conn.execute(select(Blob.size_bytes).where(Blob.sha256 == sha)).one()
        assert blobs.get(conn, sha) == data
    assert row.size_bytes == size
    stream = blobs.open_stream(engine, sha, slice_bytes=SLICE)
    assert stream.size == size
    assert b"".join(stream) == data


def test_writing_the_same_content_again_stores_it_once(engine: Engine) -> None:
    data = _content(3 * blobs.SLICE_BYTES + 17)  # beyond the default slice size
    first = _put(engine, data, blobs.SLICE_BYTES)
    again = _put(engine, data, blobs.SLICE_BYTES)
    with engine.begin() as conn:  # and beside an in-memory write of the same content
        assert blobs.put(conn, data) == first
    assert first == again and _rows(engine) == 1
    with engine.connect() as conn:
        assert blobs.get(conn, first) == data
    assert b"".join(blobs.open_stream(engine, first)) == data


def test_two_streamed_writes_in_one_transaction(engine: Engine) -> None:
    one, two = _content(3 * SLICE), _content(2 * SLICE + 5)
    with engine.begin() as conn:
        shas = [blobs.put_file(conn, io.BytesIO(d), len(d), slice_bytes=SLICE) for d in (one, two)]
    with engine.connect() as conn:
        assert [blobs.get(conn, sha) for sha in shas] == [one, two]


def test_a_streamed_write_rolls_back_with_its_transaction(engine: Engine) -> None:
    data = _content(3 * SLICE)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        blobs.put_file(conn, io.BytesIO(data), len(data), slice_bytes=SLICE)
        raise RuntimeError("later in the same transaction")
    assert _rows(engine) == 0


def test_a_file_shorter_than_its_size_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="ended after"), engine.begin() as conn:
        blobs.put_file(conn, io.BytesIO(b"x" * 10), 11)
    assert _rows(engine) == 0


def test_a_missing_blob_raises_missing_blob(engine: Engine) -> None:
    sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    with pytest.raises(MissingBlob, match="not in the blob store"):
        blobs.open_stream(engine, sha)
    with engine.connect() as conn, pytest.raises(MissingBlob, match="not in the blob store"):
        blobs.get(conn, sha)


@pytest.mark.parametrize("size", [100, 5 * SLICE])
def test_a_corrupt_blob_raises_missing_blob(engine: Engine, size: int) -> None:
    data = _content(size)
    wrong = hashlib.sha256(b"other content").hexdigest()
    with engine.begin() as conn:
        conn.execute(insert(Blob).values(sha256=wrong, size_bytes=size, content=data))
    with engine.connect() as conn, pytest.raises(MissingBlob, match="corrupt"):
        blobs.get(conn, wrong)
    with pytest.raises(MissingBlob, match="corrupt"):
        b"".join(blobs.open_stream(engine, wrong, slice_bytes=SLICE))


def test_a_blob_deleted_while_read_raises_missing_blob(engine: Engine) -> None:
    data = _content(5 * SLICE)
    sha = _put(engine, data)
    pieces = iter(blobs.open_stream(engine, sha, slice_bytes=SLICE))
    assert next(pieces) == data[:SLICE]
    with engine.begin() as conn:
        conn.execute(Blob.__table__.delete().where(Blob.sha256 == sha))
    with pytest.raises(MissingBlob, match="not in the blob store"):
        list(pieces)


def test_blob_content_is_stored_uncompressed(engine: Engine) -> None:
    data = b"compressible " * 100_000
    sha = _put(engine, data)
    with engine.connect() as conn:
        storage = conn.execute(
            text(
                "SELECT attstorage FROM pg_attribute "
                "WHERE attrelid = 'blobs'::regclass AND attname = 'content'"
            )
        ).scalar_one()
        compression = conn.execute(
            select(func.pg_column_compression(Blob.content)).where(Blob.sha256 == sha)
        ).scalar_one()
    assert storage == "e" and compression is None


def test_a_compressed_blob_from_before_the_migration_reads_the_same(engine: Engine) -> None:
    data = b"".join(b"line %d of a compressible text\n" % i for i in range(200_000))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE blobs ALTER COLUMN content SET STORAGE EXTENDED"))
        sha = blobs.put(conn, data)
    with engine.connect() as conn:
        compression = conn.execute(
            select(func.pg_column_compression(Blob.content)).where(Blob.sha256 == sha)
        ).scalar_one()
    assert compression is not None
    assert b"".join(blobs.open_stream(engine, sha, slice_bytes=SLICE)) == data
