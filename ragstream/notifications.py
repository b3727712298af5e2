"""S3 event notifications: dropping a file in a bucket is enough to have it ingested.

An object store that sends S3 event notifications to a webhook (Ceph RGW, Garage,
SeaweedFS, MinIO, or AWS through an HTTPS endpoint) posts them to
``POST /v1/notifications/s3``. Each record becomes what ``ragstream sync`` would
have done for that object, under the same ``external_id`` (``s3://bucket/key``):

* ``ObjectCreated:*``: an upload event for the object (the public contract of
  ``DocumentUploaded``, ids null), read and recorded by the parse stage; new
  content under a known key becomes that document's next version;
* ``ObjectRemoved:*``: every version of the object's document is deleted;
* anything else (``s3:TestEvent``, restore or replication events) is ignored.

Keys arrive URL-encoded (``+`` for a space), as S3 sends them. The event id of an
upload comes from the bucket, key and the record's ``sequencer`` (else its ETag),
so a notification delivered twice publishes the same event twice: harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from sqlalchemy import Connection, delete, select

from ragstream import ids
from ragstream.db.models import Document, SyncObject
from ragstream.db.purge import purge_documents
from ragstream.errors import PermanentError
from ragstream.schemas.events import utc_now


class BadNotification(PermanentError):
    """The body is not an S3 event notification."""


@dataclass(frozen=True)
class Created:
    bucket: str
    key: str
    size: int | None
    event_id: str
    at: datetime

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Removed:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class Notification:
    created: list[Created] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    ignored: int = 0


def read(payload: Any) -> Notification:
    """The records of an S3 event notification body (``{"Records": [...]}``)."""
    if not isinstance(payload, dict):
        raise BadNotification("the body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return Notification(ignored=1)  # sent once when notifications are configured
    records = payload.get("Records")
    if not isinstance(records, list):
        raise BadNotification('the body has no "Records" list: not an S3 event notification')
    out = Notification()
    for index, record in enumerate(records):
        name, bucket, obj = _fields(record, index)
        key = unquote_plus(str(obj["key"]))
        if name.startswith("ObjectCreated:"):
            size = obj.get("size")
            marker = obj.get("sequencer") or obj.get("eTag") or obj.get("versionId") or ""
            out.created.append(
                Created(
                    bucket,
                    key,
                    size if isinstance(size, int) and size >= 0 else None,
                    str(ids.notification_event_id(bucket, key, str(marker))),
                    _time(record.get("eventTime")),
                )
            )
        elif name.startswith("ObjectRemoved:"):
            out.removed.append(Removed(bucket, key))
        else:
            out.ignored += 1
    return out


def _fields(record: Any, index: int) -> tuple[str, str, dict[str, Any]]:
    where = f"Records[{index}]"
    if not isinstance(record, dict):
        raise BadNotification(f"{where} is not an object")
    name = record.get("eventName")
    s3 = record.get("s3")
    if not isinstance(name, str) or not isinstance(s3, dict):
        raise BadNotification(f'{where} has no "eventName" or "s3"')
    bucket, obj = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, dict) or not isinstance(bucket.get("name"), str):
        raise BadNotification(f"{where}.s3.bucket.name is missing")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not obj["key"]:
        raise BadNotification(f"{where}.s3.object.key is missing")
    return name, bucket["name"], obj


def _time(raw: object) -> datetime:
    if isinstance(raw, str):
        try:
            at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if at.tzinfo is not None:
                return at.astimezone(UTC)
        except ValueError:
            pass
    return utc_now()


def delete_object_documents(conn: Connection, tenant: str, uri: str) -> set[uuid.UUID]:
    """Delete every version of the document of object ``uri``, and any sync record of it."""
    documents = set(
        conn.execute(
            select(Document.id).where(Document.tenant == tenant, Document.external_id == uri)
        ).scalars()
    )
    if documents:
        conn.execute(delete(SyncObject).where(SyncObject.document_id.in_(documents)))
        purge_documents(conn, documents)
    return documents
