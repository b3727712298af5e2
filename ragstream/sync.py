"""``ragstream sync``: make the documents of a source match what is in it now.

A source is a directory or ``s3://bucket/prefix``. Its objects are compared with what the last sync
recorded (``sync_objects``): same size and modification time (an S3 object: ETag) is unchanged
without reading the file; otherwise its content hash decides. New objects are
submitted, changed ones become the next version of their ``external_id`` (the
source's URI and the object's key), and the documents of objects that are gone
are deleted.

Every step is recorded after it is done, and each is idempotent (a document is
addressed by its content): a run killed at any point and run again ends where
one uninterrupted run would have.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert

from ragstream.blobstore import parse_s3_uri
from ragstream.db import blobs
from ragstream.db.models import Document, SyncObject
from ragstream.db.purge import purge_documents
from ragstream.errors import RagstreamError
from ragstream.producers.submit import Submitter
from ragstream.settings import Settings

COUNTS = ("new", "changed", "unchanged", "deleted", "failed")


@dataclass(frozen=True)
class Found:
    """An object in the source now."""

    key: str
    size: int
    stamp: str


@dataclass(frozen=True)
class Known:
    """An object as the last sync recorded it."""

    key: str
    size: int
    stamp: str
    sha256: str
    document_id: uuid.UUID
    external_id: str


@dataclass
class Plan:
    new: list[Found] = field(default_factory=list)
    # Size or stamp differ: the content hash decides between changed and unchanged.
    check: list[tuple[Found, Known]] = field(default_factory=list)
    unchanged: list[Known] = field(default_factory=list)
    gone: list[Known] = field(default_factory=list)


def plan(found: dict[str, Found], known: dict[str, Known]) -> Plan:
    """What a sync has to look at, from listings alone (nothing read yet)."""
    out = Plan()
    for key in sorted(found):
        now, before = found[key], known.get(key)
        if before is None:
            out.new.append(now)
        elif (now.size, now.stamp) == (before.size, before.stamp):
            out.unchanged.append(before)
        else:
            out.check.append((now, before))
    out.gone = [known[k] for k in sorted(set(known) - set(found))]
    return out


class DirectorySource:
    """A directory, recursively; hidden files and directories are skipped, as by ``ingest``."""

    def __init__(self, path: Path) -> None:
        self.root = path.resolve()
        if not self.root.is_dir():
            raise RagstreamError(f"{path} is not a directory")
        self.uri = self.root.as_uri()

    def list(self) -> dict[str, Found]:
        out: dict[str, Found] = {}
        for found in self._walk():
            try:
                st = found.stat()
            except FileNotFoundError:
                continue  # removed while listing: gone
            key = found.relative_to(self.root).as_posix()
            out[key] = Found(key, st.st_size, str(st.st_mtime_ns))
        return out

    def _walk(self) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield Path(dirpath) / name

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def external_id(self, key: str) -> str:
        return f"{self.uri}/{key}"


class S3Source:
    """Objects under ``s3://bucket/prefix``; the ETag stands for the modification time."""

    def __init__(self, client: Any, uri: str) -> None:
        self.client = client
        self.bucket, self.prefix = parse_s3_uri(uri)
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def list(self) -> dict[str, Found]:
        out: dict[str, Found] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) :]
                if key and not key.endswith("/") and not key.rsplit("/", 1)[-1].startswith("."):
                    out[key] = Found(key, int(obj["Size"]), str(obj["ETag"]).strip('"'))
        return out

    def read(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        return bytes(body.read())

    def external_id(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"


Source = DirectorySource | S3Source


def open_source(settings: Settings, source: str) -> Source:
    """A directory, or ``s3://bucket/prefix`` with the settings' S3 client."""
    if source.startswith("s3://"):
        from ragstream.blobstore import s3_client

        try:
            return S3Source(s3_client(settings), source)
        except ValueError as exc:
            raise RagstreamError(str(exc)) from None
    return DirectorySource(Path(source))


@dataclass
class SyncResult:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {**self.counts, "errors": self.errors}


def known_objects(engine: Engine, tenant: str, source: str) -> dict[str, Known]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                SyncObject.key,
                SyncObject.size_bytes,
                SyncObject.stamp,
                SyncObject.sha256,
                SyncObject.document_id,
                SyncObject.external_id,
            ).where(SyncObject.tenant == tenant, SyncObject.source == source)
        )
        return {r.key: Known(*r) for r in rows}


def sync(
    submitter: Submitter,
    source: Source,
    *,
    tenant: str | None = None,
    dry_run: bool = False,
    delete_gone: bool = True,
    after_each: Callable[[], None] | None = None,
) -> SyncResult:
    """One pass over ``source``; returns the counts (with ``dry_run``, what it would do)."""
    tenant = tenant or submitter.settings.tenant
    engine = submitter.engine
    result = SyncResult()
    todo = plan(source.list(), known_objects(engine, tenant, source.uri))
    result.counts["unchanged"] = len(todo.unchanged)
    max_bytes = submitter.settings.max_upload_bytes

    def submit(now: Found, external_id: str, kind: str) -> None:
        if now.size > max_bytes:
            raise RagstreamError(f"file is {now.size} bytes, over the limit of {max_bytes}")
        result.counts[kind] += 1
        if dry_run:
            return
        data = source.read(now.key)
        done = submitter.submit(
            data, filename=now.key.rsplit("/", 1)[-1], tenant=tenant, external_id=external_id
        )
        with engine.connect() as conn:
            # Content already there under another name keeps that name's versions.
            external_id = (
                conn.execute(
                    select(Document.external_id).where(Document.id == done.document_id)
                ).scalar_one_or_none()
                or external_id
            )
        _record(
            engine, tenant, source.uri, now, blobs.sha256_of(data), done.document_id, external_id
        )

    for now in todo.new:
        _attempt(result, now.key, partial(submit, now, source.external_id(now.key), "new"))
        if after_each:
            after_each()
    for now, before in todo.check:

        def check(now: Found = now, before: Known = before) -> None:
            if now.size > max_bytes:
                submit(now, before.external_id, "changed")  # raises: over the limit
            data = source.read(now.key)
            sha = blobs.sha256_of(data)
            if sha == before.sha256:
                result.counts["unchanged"] += 1
                if not dry_run:
                    _record(
                        engine,
                        tenant,
                        source.uri,
                        now,
                        sha,
                        before.document_id,
                        before.external_id,
                    )
                return
            submit(now, before.external_id, "changed")

        _attempt(result, now.key, check)
        if after_each:
            after_each()
    if delete_gone:
        for gone in todo.gone:
            result.counts["deleted"] += 1
            if not dry_run:
                _attempt(result, gone.key, partial(_delete, engine, tenant, source.uri, gone))
            if after_each:
                after_each()
    return result


def _attempt(result: SyncResult, key: str, step: Callable[[], None]) -> None:
    try:
        step()
    except (RagstreamError, OSError) as exc:
        result.counts["failed"] += 1
        result.errors[key] = exc.message if isinstance(exc, RagstreamError) else str(exc)


def _record(
    engine: Engine,
    tenant: str,
    source: str,
    now: Found,
    sha256: str,
    document_id: uuid.UUID,
    external_id: str,
) -> None:
    values = {
        "tenant": tenant,
        "source": source,
        "key": now.key,
        "size_bytes": now.size,
        "stamp": now.stamp,
        "sha256": sha256,
        "document_id": document_id,
        "external_id": external_id,
    }
    stmt = insert(SyncObject).values(**values)
    with engine.begin() as conn:
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[SyncObject.tenant, SyncObject.source, SyncObject.key],
                set_={k: stmt.excluded[k] for k in values if k not in ("tenant", "source", "key")},
            )
        )


def _delete(engine: Engine, tenant: str, source: str, gone: Known) -> None:
    """Delete the document (every version) of an object that is gone, and its record.

    A document another object of a source still names (a renamed file, or a
    copy) stays; only the record goes.
    """
    with engine.begin() as conn:
        conn.execute(
            delete(SyncObject).where(
                SyncObject.tenant == tenant, SyncObject.source == source, SyncObject.key == gone.key
            )
        )
        versions = set(
            conn.execute(
                select(Document.id).where(
                    Document.tenant == tenant, Document.external_id == gone.external_id
                )
            ).scalars()
        ) | {gone.document_id}
        still_named = set(
            conn.execute(
                select(SyncObject.document_id).where(
                    SyncObject.tenant == tenant, SyncObject.document_id.in_(versions)
                )
            ).scalars()
        )
        if still_named:
            return
        purge_documents(conn, versions)
