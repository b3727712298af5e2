"""Content-addressed blob store in PostgreSQL (the claim check for large payloads).

Events carry ``pg://blobs/<sha256>``; the bytes live once per content, so an
upload stored twice or a replayed parse writes nothing new.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, Executable, select
from sqlalchemy.dialects.postgresql import insert

from ragstream.db.models import Blob
from ragstream.errors import MissingBlob

URI_PREFIX = "pg://blobs/"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uri_for(sha256: str) -> str:
    return URI_PREFIX + sha256


def put_statement(data: bytes) -> Executable:
    """The insert that stores ``data`` once per content (a no-op when it is there)."""
    stmt = insert(Blob).values(sha256=sha256_of(data), size_bytes=len(data), content=data)
    return stmt.on_conflict_do_nothing(index_elements=[Blob.sha256])


def put(conn: Connection, data: bytes) -> str:
    """Store ``data`` and return its sha256."""
    conn.execute(put_statement(data))
    return sha256_of(data)


def get(conn: Connection, sha256: str) -> bytes:
    content = conn.execute(select(Blob.content).where(Blob.sha256 == sha256)).scalar_one_or_none()
    if content is None:
        raise MissingBlob(f"blob {sha256} is not in the blob store")
    if sha256_of(content) != sha256:
        raise MissingBlob(f"blob {sha256} is corrupt: its content has another hash")
    return bytes(content)
