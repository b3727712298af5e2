"""Objects outside PostgreSQL: the S3 client every S3 user builds here, and the one
reader of the objects that events from other services name.

The client is boto3 with the addressing style of the settings (path-style for
S3Proxy and most S3-compatible servers); credentials come from the settings,
else from boto3's usual chain (``AWS_ACCESS_KEY_ID``, profiles, roles).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, cast
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine

from ragstream.db.blobs import URI_PREFIX
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
_ABSENT_S3_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound", "AccessDenied", "403"}


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
        return _pg_pieces(uri, engine)
    raise UnreadableObject(
        f"unknown object URI {uri[:200]!r}: expected s3://bucket/key, an allow-listed "
        f"https:// URL or {URI_PREFIX}<sha256>"
    )


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
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _ABSENT_S3_CODES or (400 <= status < 500 and status != 429):
            raise UnreadableObject(f"{uri}: {code or status} {error.get('Message', '')}") from None
        raise ObjectStoreUnavailable(f"{uri}: {code or status} {error.get('Message', '')}") from exc
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


def _pg_pieces(uri: str, engine: Engine) -> Iterator[bytes]:
    from ragstream.db import blobs

    sha256 = uri[len(URI_PREFIX) :].lower()
    try:
        return iter(blobs.open_stream(engine, sha256))
    except MissingBlob as exc:
        raise UnreadableObject(str(exc)) from None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _too_large(uri: str, max_bytes: int) -> str:
    return f"{uri} is larger than the limit of {max_bytes} bytes (RAGSTREAM_MAX_UPLOAD_BYTES)"
