"""Deterministic ids: the same inputs always give the same UUIDv5.

This is what makes redelivery and replay safe: every row and every event is
keyed by an id derived from its inputs, so writing it again overwrites.
The namespace and the name formats below must never change; tests pin values.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1d7c1e-3b0a-5c52-9a57-2f4c7d0e8a11")


def _v5(kind: str, *parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, kind + ":" + "\x1f".join(str(p) for p in parts))


def document_id(tenant: str, sha256: str) -> uuid.UUID:
    """A document is its tenant plus its content."""
    return _v5("document", tenant, sha256.lower())


def unread_document_id(tenant: str, event_id: str) -> uuid.UUID:
    """A document whose content was never read (an event from another service that
    named an object ragstream could not read) is its tenant plus that event."""
    return _v5("unread-document", tenant, event_id)


def notification_event_id(bucket: str, key: str, marker: str) -> uuid.UUID:
    """The upload event of one S3 notification record (``marker``: its sequencer or ETag)."""
    return _v5("s3-notification", bucket, key, marker)


def job_id(document_id: uuid.UUID, attempt_key: str) -> uuid.UUID:
    """One job per (document, submission key): "upload", or a reprocess request's id."""
    return _v5("job", document_id, attempt_key)


def chunk_id(document_id: uuid.UUID, chunker_version: str, index: int) -> uuid.UUID:
    return _v5("chunk", document_id, chunker_version, index)


def embedding_id(chunk_id: uuid.UUID, model: str) -> uuid.UUID:
    return _v5("embedding", chunk_id, model)


def event_id(event_type: str, subject_id: uuid.UUID, *qualifiers: object) -> uuid.UUID:
    """An event is its type, the id it is about, and what distinguishes repeats (e.g. the job)."""
    return _v5("event", event_type, subject_id, *qualifiers)
