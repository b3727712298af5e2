"""Objects outside PostgreSQL: the S3 client every S3 user builds here, and the one
reader of the objects that events from other services name.

The client is boto3 with the addressing style of the settings (path-style for
S3Proxy and most S3-compatible servers); credentials come from the settings,
else from boto3's usual chain (``AWS_ACCESS_KEY_ID``, profiles, roles).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal, cast
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, Engine, func, select

from ragstream.db import blobs
from ragstream.db.blobs import URI_PREFIX
from ragstream.db.models import Blob
from ragstream.errors import (
    ChecksumMismatch,
    MissingBlob,
    ObjectStoreUnavailable,
    ObjectTooLarge,
    UnreadableObject,
)
from ragstream.settings import Settings


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); a ValueError for anything else."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the settings' endpoint, credentials and addressing style."""
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        region_name=settings.s3_region or "us-east-1",
        config=Config(
            s3={"addressing_style": settings.s3_addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


# --- objects named by events from other services ------------------------------------

READ_PIECE_BYTES = 1024 * 1024
# Kept in memory up to this size; a larger object goes on to a temporary file.
SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024
_ABSENT_S3_CODES = {"NoSuchKey", "404", "NotFound"}
# No bucket at all is the request's fault (or the operator's), not one object's absence.
_REFUSED_S3_CODES = {"NoSuchBucket", "AccessDenied", "403"}


@dataclass
class ReadObject:
    """An object read whole into a spooled temporary file, with its hash and size."""

    uri: str
    file: IO[bytes]
    sha256: str
    size: int


@contextmanager
def read_object(
    uri: str,
    settings: Settings,
    engine: Engine,
    *,
    max_bytes: int,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
) -> Iterator[ReadObject]:
    """Read ``uri`` (``s3://``, an allow-listed ``http(s)://``, ``pg://blobs/``) in pieces.

    The object is never whole in memory past :data:`SPOOL_IN_MEMORY_BYTES`, is cut
    off past ``max_bytes``, and must match the expected hash and size when given.
    Raises :class:`UnreadableObject`, :class:`ObjectTooLarge`, :class:`ChecksumMismatch`
    (the event's fault) or :class:`ObjectStoreUnavailable` (try again later).
    """
    pieces = _pieces(uri, settings, engine, max_bytes)
    digest = hashlib.sha256()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
        for piece in pieces:
            size += len(piece)
            if size > max_bytes:
                raise ObjectTooLarge(_too_large(uri, max_bytes))
            digest.update(piece)
            spool.write(piece)
        sha256 = digest.hexdigest()
        if expected_size is not None and size != expected_size:
            raise ChecksumMismatch(f"{uri} has {size} bytes, the event says {expected_size}")
        if expected_sha256 is not None and sha256 != expected_sha256.lower():
            raise ChecksumMismatch(
                f"{uri} has sha256 {sha256}, the event says {expected_sha256.lower()}"
            )
        spool.seek(0)
        yield ReadObject(uri, cast(IO[bytes], spool), sha256, size)


def allowed_url(uri: str, settings: Settings) -> bool:
    """Whether ``uri`` lies under one of the allow-list's prefixes.

    Compared parsed, not as text: the same scheme, host and port, no user info
    (``https://allowed@evil/``), and a path under the prefix's with no ``.`` or ``..``
    segment (``/ok/../private`` is not under ``/ok/``).
    """
    try:
        url = urlsplit(uri)
        port = url.port
    except ValueError:
        return False
    if url.username is not None or url.password is not None or not url.hostname:
        return False
    if any(segment in (".", "..") for segment in unquote(url.path).split("/")):
        return False
    for prefix in (p.strip() for p in settings.external_url_allowlist.split(",")):
        try:
            allowed = urlsplit(prefix)
            allowed_port = allowed.port
        except ValueError:
            continue
        if (
            prefix
            and allowed.scheme.lower() == url.scheme.lower()
            and (allowed.hostname or "") == url.hostname
            and allowed_port == port
            and url.path.startswith(allowed.path or "/")
        ):
            return True
    return False


def _pieces(uri: str, settings: Settings, engine: Engine, max_bytes: int) -> Iterator[bytes]:
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme == "s3":
        return _s3_pieces(uri, settings, max_bytes)
    if scheme in ("http", "https"):
        if not allowed_url(uri, settings):
            raise UnreadableObject(
                f"{uri} is not under a prefix of RAGSTREAM_EXTERNAL_URL_ALLOWLIST; "
                "add its prefix there to let events name it"
            )
        return _http_pieces(uri, max_bytes)
    if uri.startswith(URI_PREFIX):
        return _pg_pieces(uri, settings, engine)
    raise UnreadableObject(
        f"unknown object URI {uri[:200]!r}: expected s3://bucket/key, an allow-listed "
        f"https:// URL or {URI_PREFIX}<sha256>"
    )


def s3_failure(exc: Any) -> tuple[Literal["absent", "refused", "unavailable"], str]:
    """What an S3 error (botocore's ``ClientError``) says of the object, and why: absent
    (no such key), refused (another 4xx: no such bucket, denied, a bad request), or the
    store unavailable (5xx, 429 and the like), which is worth retrying."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    reason = f"{code or status} {error.get('Message', '')}".strip()
    if code in _REFUSED_S3_CODES:
        return "refused", reason
    if code in _ABSENT_S3_CODES or status == 404:
        return "absent", reason
    if 400 <= status < 500 and status != 429:
        return "refused", reason
    return "unavailable", reason


def _s3_pieces(uri: str, settings: Settings, max_bytes: int) -> Iterator[bytes]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as exc:
        raise UnreadableObject(str(exc)) from None
    if not key:
        raise UnreadableObject(f"no key in {uri!r}")
    try:
        answer = s3_client(settings).get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        kind, reason = s3_failure(exc)
        if kind != "unavailable":
            raise UnreadableObject(f"{uri}: {reason}") from None
        raise ObjectStoreUnavailable(f"{uri}: {reason}") from exc
    except BotoCoreError as exc:
        raise ObjectStoreUnavailable(f"{uri}: {exc}") from exc
    if int(answer.get("ContentLength") or 0) > max_bytes:
        answer["Body"].close()
        raise ObjectTooLarge(_too_large(uri, max_bytes))
    return _s3_body(uri, answer["Body"])


def _s3_body(uri: str, body: Any) -> Iterator[bytes]:
    from botocore.exceptions import BotoCoreError

    try:
        yield from body.iter_chunks(READ_PIECE_BYTES)
    except BotoCoreError as exc:
        raise ObjectStoreUnavailable(f"{uri}: {exc}") from exc
    finally:
        body.close()


def _http_pieces(uri: str, max_bytes: int) -> Iterator[bytes]:
    import httpx

    try:
        with httpx.stream("GET", uri, follow_redirects=False, timeout=30.0) as response:
            status = response.status_code
            if status in (429,) or status >= 500:
                error = ObjectStoreUnavailable(f"{uri}: HTTP {status}")
                error.retry_after_s = _retry_after(response.headers.get("retry-after"))
                raise error
            if 300 <= status < 400:
                raise UnreadableObject(f"{uri}: HTTP {status} redirect, not followed")
            if status != 200:
                raise UnreadableObject(f"{uri}: HTTP {status}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ObjectTooLarge(_too_large(uri, max_bytes))
            yield from response.iter_bytes(READ_PIECE_BYTES)
    except httpx.InvalidURL as exc:
        raise UnreadableObject(f"{uri}: {exc}") from None
    except httpx.HTTPError as exc:
        raise ObjectStoreUnavailable(f"{uri}: {type(exc).__name__}: {exc}") from exc


def _pg_pieces(uri: str, settings: Settings, engine: Engine) -> Iterator[bytes]:
    sha256 = uri[len(URI_PREFIX) :].lower()
    try:
        return iter(BlobStore(settings, engine).open_stream(sha256))
    except MissingBlob as exc:
        raise UnreadableObject(str(exc)) from None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _too_large(uri: str, max_bytes: int) -> str:
    return f"{uri} is larger than the limit of {max_bytes} bytes (RAGSTREAM_MAX_UPLOAD_BYTES)"


# --- the store of uploads -------------------------------------------------------------


class BlobStore:
    """Where uploaded documents' bytes are kept: PostgreSQL (``blob_store = postgres``, the
    default) or an S3-compatible bucket (``blob_store = s3://bucket/prefix``).

    Either way each upload has its row in ``blobs``, keyed by its sha256: references,
    locks and deletes go through rows as before, and in S3 the row holds the object's
    URI instead of the bytes. An object is written while its row is locked, under a
    per-hash advisory lock that :meth:`sweep` takes too, so an object is only ever
    removed when no row has named it for ``older_than_s``. Parsed text and the other
    internal blobs always stay in PostgreSQL: they are small and read at once.

    Rows stored before a switch of ``blob_store`` keep being read from where they are.
    """

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.bucket: str | None = None
        self.prefix = ""
        if settings.blob_store != "postgres":
            self.bucket, prefix = parse_s3_uri(settings.blob_store)
            self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.settings)
        return self._client

    def location(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{sha256}"

    def put(self, conn: Connection, data: bytes) -> str:
        """Store ``data`` in the transaction of ``conn``; returns its sha256."""
        if self.bucket is None:
            conn.execute(blobs.put_statement(data))
            return blobs.sha256_of(data)
        return self.put_file(conn, io.BytesIO(data), len(data))

    def put_file(self, conn: Connection, file: IO[bytes], size: int) -> str:
        """Store ``size`` bytes of ``file`` (from its start), in pieces; returns their sha256."""
        if self.bucket is None:
            return blobs.put_file(conn, file, size)
        sha256 = _sha256_of_file(file, size)
        _lock(conn, sha256)
        location = self.location(sha256)
        conn.execute(blobs.put_location_statement(sha256, size, location))
        stored = conn.execute(select(Blob.location).where(Blob.sha256 == sha256)).scalar_one()
        if stored == location and not self._has(sha256, size):
            file.seek(0)
            try:
                self.client.upload_fileobj(_Limited(file, size), self.bucket, self.prefix + sha256)
            except Exception as exc:
                raise ObjectStoreUnavailable(f"storing {location}: {exc}") from exc
        return sha256

    def open_stream(self, sha256: str) -> blobs.BlobStream | ObjectStream:
        """The upload ``sha256`` to read in pieces, checked against its hash at the end."""
        try:
            return blobs.open_stream(self.engine, sha256)  # one query for a row's bytes
        except blobs.Elsewhere as kept:
            return self._object(sha256, kept)

    def get(self, conn: Connection, sha256: str) -> bytes:
        """The whole upload ``sha256`` (for a parser that needs it whole: a part, LlamaParse)."""
        try:
            return blobs.get(conn, sha256)
        except blobs.Elsewhere as kept:
            return b"".join(self._object(sha256, kept))

    def _object(self, sha256: str, kept: blobs.Elsewhere) -> ObjectStream:
        if kept.location is None:  # the check constraint forbids it; say so if it happens
            raise MissingBlob(f"blob {sha256} has neither content nor location")
        return ObjectStream(self.client, kept.location, sha256, kept.size)

    def sweep(self, older_than_s: float) -> int:
        """Delete the objects under the prefix no row names, last written over
        ``older_than_s`` ago; returns how many. (A delete removes rows only.)"""
        if self.bucket is None:
            return 0
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        removed = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                sha256 = str(obj["Key"])[len(self.prefix) :]
                if len(sha256) != 64 or obj["LastModified"] > cutoff:
                    continue
                with self.engine.begin() as conn:
                    _lock(conn, sha256)
                    named = conn.execute(
                        select(Blob.sha256).where(
                            Blob.sha256 == sha256, Blob.location == self.location(sha256)
                        )
                    ).first()
                    if named is None:
                        self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                        removed += 1
        return removed

    def _has(self, sha256: str, size: int) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + sha256)
        except ClientError as exc:
            kind, reason = s3_failure(exc)
            if kind == "absent":
                return False
            raise ObjectStoreUnavailable(f"{self.location(sha256)}: {reason}") from exc
        return int(head.get("ContentLength", -1)) == size


class ObjectStream:
    """An upload kept in S3, read in pieces and checked against its hash after the last."""

    whole: bytes | None = None  # never read whole up front

    def __init__(self, client: Any, location: str, sha256: str, size: int) -> None:
        self.client = client
        self.location = location
        self.sha256 = sha256
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = parse_s3_uri(self.location)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            kind, reason = s3_failure(exc)
            if kind == "absent":
                raise MissingBlob(f"blob {self.sha256} is not at {self.location}") from None
            raise ObjectStoreUnavailable(f"{self.location}: {reason}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"{self.location}: {exc}") from exc
        digest = hashlib.sha256()
        read = 0
        for piece in _s3_body(self.location, body):
            digest.update(piece)
            read += len(piece)
            yield piece
        if read != self.size or digest.hexdigest() != self.sha256:
            raise MissingBlob(f"blob {self.sha256} at {self.location} is corrupt: another hash")


class _Limited(io.RawIOBase):
    """The first ``size`` bytes of a file, for an upload that must not send more."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file = file
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        piece = self.file.read(n) if n else b""
        self.left -= len(piece)
        return piece

    def readinto(self, buffer: Any) -> int:
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)


def _sha256_of_file(file: IO[bytes], size: int) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    left = size
    while left > 0:
        piece = file.read(min(READ_PIECE_BYTES, left))
        if not piece:
            raise ValueError(f"file ended {left} bytes before its size of {size}")
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


def _lock(conn: Connection, sha256: str) -> None:
    """The per-hash lock between writing an object and sweeping it (until commit)."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("blob:" + sha256, 0))))
