"""Content-addressed blob store in PostgreSQL (the claim check for large payloads).

Events carry ``pg://blobs/<sha256>``; the bytes live once per content, so an
upload stored twice or a replayed parse writes nothing new.

A large blob is read and written in slices (:class:`BlobStream`,
:func:`put_file`), so a worker never holds a whole one, let alone the driver's
escaped copies of it. The column is stored uncompressed (migration 0008): a
slice of a compressed value costs a decompression of everything before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import IO

from sqlalchemy import Connection, Engine, Executable, delete, false, func, select, text
from sqlalchemy.dialects.postgresql import insert

from ragstream.db.models import Blob, Document, DocumentPart, LlamaParseJob, ParseBuffer
from ragstream.errors import MissingBlob

URI_PREFIX = "pg://blobs/"
# Slices of this size cost a few MB in the driver and keep round trips few.
SLICE_BYTES = 1024 * 1024
# A compressed value (stored before migration 0008) is read in at most this many
# slices: each one decompresses the value up to its end.
_COMPRESSED_SLICES = 8


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uri_for(sha256: str) -> str:
    return URI_PREFIX + sha256


def put_statement(data: bytes) -> Executable:
    """The insert that stores ``data`` once per content and holds its row until commit.

    Present content is not written again, but its row is locked (``ON CONFLICT
    DO UPDATE ... WHERE false`` locks the conflicting row and updates nothing):
    a concurrent :func:`delete_unreferenced` waits for this transaction, then
    sees the reference it commits. Without the lock, a delete that cannot yet
    see the new reference removes the blob under it (issue 14, item 10). A row
    deleted meanwhile is inserted again by the same statement.
    """
    stmt = insert(Blob).values(sha256=sha256_of(data), size_bytes=len(data), content=data)
    return stmt.on_conflict_do_update(
        index_elements=[Blob.sha256],
        set_={"size_bytes": stmt.excluded.size_bytes},
        where=false(),
    )


def put_location_statement(sha256: str, size: int, location: str) -> Executable:
    """The row of an upload kept as an object at ``location``; locks as :func:`put_statement`."""
    stmt = insert(Blob).values(sha256=sha256, size_bytes=size, content=None, location=location)
    return stmt.on_conflict_do_update(
        index_elements=[Blob.sha256], set_={"size_bytes": stmt.excluded.size_bytes}, where=false()
    )


def put(conn: Connection, data: bytes) -> str:
    """Store ``data`` and return its sha256."""
    conn.execute(put_statement(data))
    return sha256_of(data)


def put_file(
    conn: Connection, file: IO[bytes], size: int, *, slice_bytes: int = SLICE_BYTES
) -> str:
    """Store ``size`` bytes of ``file`` (from its start) slice by slice; return their sha256.

    The slices go to a temporary table while they are hashed, then move into
    the store under that hash in one statement: the key is the hash of what
    was stored, and storing the same content again writes nothing.
    """
    file.seek(0)
    digest = hashlib.sha256()
    conn.execute(text("CREATE TEMPORARY TABLE ragstream_blob_slices (n int, piece bytea)"))
    conn.execute(text("ALTER TABLE ragstream_blob_slices ALTER COLUMN piece SET STORAGE EXTERNAL"))
    add = text("INSERT INTO ragstream_blob_slices (n, piece) VALUES (:n, :piece)")
    stored = pieces = 0
    while stored < size:
        piece = file.read(min(slice_bytes, size - stored))
        if not piece:
            raise ValueError(f"file ended after {stored} of {size} bytes")
        digest.update(piece)
        conn.execute(add, {"n": pieces, "piece": piece})
        stored += len(piece)
        pieces += 1
    sha256 = digest.hexdigest()
    conn.execute(
        text(
            "INSERT INTO blobs (sha256, size_bytes, content) "
            "SELECT :sha256, :size, coalesce(string_agg(piece, ''::bytea ORDER BY n), ''::bytea) "
            "FROM ragstream_blob_slices "
            # Present content is locked, not rewritten (see put_statement).
            "ON CONFLICT (sha256) DO UPDATE SET size_bytes = EXCLUDED.size_bytes WHERE false"
        ),
        {"sha256": sha256, "size": size},
    )
    conn.execute(text("DROP TABLE ragstream_blob_slices"))
    return sha256


def lock_for_delete(conn: Connection, shas: Iterable[str]) -> set[str]:
    """Lock the rows of ``shas`` that exist (``FOR UPDATE``, in key order); returns them.

    Taken before the references to them are removed, so a writer holding a blob
    (:func:`put_statement`) commits its reference first, and one coming later
    waits for the delete and stores the content again.
    """
    wanted = sorted(set(shas))
    if not wanted:
        return set()
    return set(
        conn.execute(
            select(Blob.sha256)
            .where(Blob.sha256.in_(wanted))
            .order_by(Blob.sha256)
            .with_for_update()
        ).scalars()
    )


def delete_unreferenced(conn: Connection, locked: set[str]) -> set[str]:
    """Delete the blobs of ``locked`` (see :func:`lock_for_delete`) nothing refers to any more.

    A reference is a document's upload, a parse result, a part of a large PDF or
    a LlamaParse result. Returns the deleted keys.
    """
    if not locked:
        return set()
    used: set[str] = set()
    for column in (
        Document.sha256,
        ParseBuffer.text_blob_sha256,
        DocumentPart.parsed_blob_sha256,
        LlamaParseJob.result_blob_sha256,
    ):
        used |= {s for s in conn.execute(select(column).where(column.in_(locked))).scalars() if s}
    unused = locked - used
    if unused:
        conn.execute(delete(Blob).where(Blob.sha256.in_(sorted(unused))))
    return unused


class Elsewhere(MissingBlob):
    """The blob's row names an object that holds its bytes (read through
    :class:`ragstream.blobstore.BlobStore`, which catches this)."""

    def __init__(self, sha256: str, location: str | None, size: int) -> None:
        super().__init__(
            f"blob {sha256} is kept at {location}: read it through ragstream.blobstore.BlobStore"
        )
        self.location = location
        self.size = size


def get(conn: Connection, sha256: str) -> bytes:
    row = conn.execute(
        select(Blob.content, Blob.location, Blob.size_bytes).where(Blob.sha256 == sha256)
    ).one_or_none()
    if row is None:
        raise MissingBlob(f"blob {sha256} is not in the blob store")
    content = row.content
    if content is None:
        raise Elsewhere(sha256, row.location, int(row.size_bytes))
    if sha256_of(content) != sha256:
        raise MissingBlob(_corrupt(sha256))
    return bytes(content)


class BlobStream:
    """A stored blob as slices, for sending on without holding it.

    Iterating reads one slice per query, each on a connection of its own, so
    nothing is held open while the consumer is busy. The content is checked
    against its hash at the end: a corrupt blob raises :class:`MissingBlob`
    after its last slice, a missing one when opened (:func:`open_stream`).
    """

    def __init__(
        self, engine: Engine, sha256: str, size: int, first: bytes, slice_bytes: int
    ) -> None:
        self.sha256 = sha256
        self.size = size
        self._engine = engine
        self._first = first
        self._slice_bytes = slice_bytes

    @property
    def whole(self) -> bytes | None:
        """The content, when it came in one slice (already checked)."""
        return self._first if len(self._first) == self.size else None

    def __iter__(self) -> Iterator[bytes]:
        if self.whole is not None:
            yield self._first
            return
        digest = hashlib.sha256(self._first)
        yield self._first
        read = len(self._first)
        while read < self.size:
            with self._engine.connect() as conn:
                piece = conn.execute(
                    select(func.substring(Blob.content, read + 1, self._slice_bytes)).where(
                        Blob.sha256 == self.sha256
                    )
                ).scalar_one_or_none()
            if piece is None:
                raise MissingBlob(f"blob {self.sha256} is not in the blob store")
            if not piece:
                break  # shorter than its size says: the hash check below fails it
            digest.update(piece)
            read += len(piece)
            yield bytes(piece)
        if read != self.size or digest.hexdigest() != self.sha256:
            raise MissingBlob(_corrupt(self.sha256))


def open_stream(engine: Engine, sha256: str, *, slice_bytes: int = SLICE_BYTES) -> BlobStream:
    """The blob ``sha256`` to read in slices; its first slice comes with its size, in one query."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                func.octet_length(Blob.content),
                func.pg_column_compression(Blob.content),
                func.substring(Blob.content, 1, slice_bytes),
                Blob.location,
                Blob.size_bytes,
            ).where(Blob.sha256 == sha256)
        ).one_or_none()
    if row is None:
        raise MissingBlob(f"blob {sha256} is not in the blob store")
    if row[0] is None:
        raise Elsewhere(sha256, row[3], int(row[4]))
    size, compression, first = int(row[0]), row[1], bytes(row[2])
    if len(first) == size and sha256_of(first) != sha256:
        raise MissingBlob(_corrupt(sha256))
    if compression is not None:
        slice_bytes = max(slice_bytes, -(-size // _COMPRESSED_SLICES))
    return BlobStream(engine, sha256, size, first, slice_bytes)


def _corrupt(sha256: str) -> str:
    return f"blob {sha256} is corrupt: its content has another hash"
