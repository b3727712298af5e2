"""The idempotent writes every stage uses, and the one place document status changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from ragstream import state
from ragstream.db.models import Base, Document, Job
from ragstream.db.purge import purge_documents
from ragstream.state import DocumentStatus


def upsert(conn: Connection, model: type[Base], rows: Iterable[Mapping[str, Any]]) -> int:
    """``INSERT ... ON CONFLICT (pk) DO UPDATE``; of rows sharing a key, the last one wins.

    The rows go as parameters of one compiled statement, which the driver
    sends in pages of many rows (SQLAlchemy's "insertmanyvalues", within
    PostgreSQL's limit on bind parameters). Compiling a statement with every
    row inlined cost 8x as much for a document's 500 chunks.
    """
    table = model.__table__
    (key,) = [c.name for c in table.primary_key]
    unique = {row[key]: dict(row) for row in rows}
    if not unique:
        return 0
    values = list(unique.values())
    stmt = insert(model)
    changed: dict[str, Any] = {name: stmt.excluded[name] for name in values[0] if name != key}
    if "updated_at" in {c.name for c in table.columns}:
        changed["updated_at"] = func.statement_timestamp()
    conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=changed), values)
    return len(unique)


def insert_absent(conn: Connection, model: type[Base], rows: Iterable[Mapping[str, Any]]) -> None:
    """``INSERT ... ON CONFLICT (pk) DO NOTHING`` for rows whose key says what they hold.

    Rows go in key order, so that two workers inserting overlapping keys lock
    them in the same order and cannot deadlock.
    """
    table = model.__table__
    (key,) = [c.name for c in table.primary_key]
    values = sorted({row[key]: dict(row) for row in rows}.values(), key=lambda row: str(row[key]))
    if values:
        conn.execute(insert(model).on_conflict_do_nothing(index_elements=[key]), values)


def current_jobs(
    conn: Connection, document_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """Each existing document's current job (``documents.current_job_id``), in one query."""
    wanted = set(document_ids)
    if not wanted:
        return {}
    rows = conn.execute(select(Document.id, Document.current_job_id).where(Document.id.in_(wanted)))
    return {document_id: job_id for document_id, job_id in rows}


@dataclass(frozen=True)
class Transition:
    """Move a document (of a given job) to ``status``; ``fields`` are set along with it."""

    document_id: uuid.UUID
    job_id: uuid.UUID | None
    status: DocumentStatus
    fields: Mapping[str, Any] = field(default_factory=dict)


def apply_transition(conn: Connection, t: Transition) -> bool:
    """Apply one status change under a row lock; False when it changes nothing.

    Nothing changes for an event of an older job (the document was reprocessed
    since), for a status the document already has or has passed (redelivery,
    replay), or for a document that already ended. Any other change must be a
    legal path in the state machine, or :class:`IllegalTransition` is raised.
    Every status on the path gets its timestamp from the database clock.
    """
    row = conn.execute(
        select(Document.status, Document.current_job_id)
        .where(Document.id == t.document_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        return False
    current = DocumentStatus(row.status)
    if t.job_id is not None and row.current_job_id is not None and row.current_job_id != t.job_id:
        return False
    if current == t.status or state.is_stale(current, t.status) or state.is_terminal(current):
        return False
    path = state.path_to(current, t.status)
    now = func.statement_timestamp()
    values: dict[str, Any] = {"status": t.status.value, "updated_at": now, **t.fields}
    for step in path:
        state.transition(current, step)
        column = state.STATUS_TIMESTAMP_FIELD[step]
        values[column] = func.coalesce(getattr(Document, column), now)
        current = step
    conn.execute(update(Document).where(Document.id == t.document_id).values(**values))
    job_values: dict[str, Any] = {"status": t.status.value, "updated_at": now}
    if state.is_terminal(t.status):
        job_values["finished_at"] = now
    conn.execute(update(Job).where(Job.id == (t.job_id or row.current_job_id)).values(**job_values))
    if t.status is DocumentStatus.COMPLETE:
        _retire_older_versions(conn, t.document_id)
    return True


def _retire_older_versions(conn: Connection, document_id: uuid.UUID) -> None:
    """A version that completes replaces the older ones in the same transaction.

    Their chunks and vectors go with them (ON DELETE CASCADE), so search sees the
    old version until this commits and the new one from then on, never both.
    """
    done = conn.execute(
        select(Document.tenant, Document.external_id, Document.version).where(
            Document.id == document_id
        )
    ).one()
    if done.external_id is None:
        return
    older = conn.execute(
        select(Document.id).where(
            Document.tenant == done.tenant,
            Document.external_id == done.external_id,
            Document.version < done.version,
        )
    ).scalars()
    # Their text goes with them: blobs, cache rows and keys only they used.
    purge_documents(conn, list(older))


def reset_for_reprocess(
    conn: Connection,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    stage: state.Stage,
    *,
    trace_id: str | None = None,
) -> DocumentStatus:
    """Send a complete or failed document back to the status before ``stage``, as job ``job_id``.

    A new job records ``trace_id``, the trace of the request that asked for it.

    The state machine decides (:func:`state.reprocess`): a document still in
    flight raises :class:`IllegalTransition`. Times and results of the stages
    that will run again are cleared, so they never mix with the new run's.
    """
    current = conn.execute(
        select(Document.status).where(Document.id == document_id).with_for_update()
    ).scalar_one()
    target = state.reprocess(current, stage)
    now = func.statement_timestamp()
    values: dict[str, Any] = {
        "status": target.value,
        "current_job_id": job_id,
        "updated_at": now,
        "failed_stage": None,
        "error_class": None,
        "error_message": None,
        "embedding_model": None,
        **{column: None for column in state.fields_to_clear_on_reset(target)},
    }
    if target is not DocumentStatus.CHUNKED:
        values["chunk_count"] = None
    conn.execute(update(Document).where(Document.id == document_id).values(**values))
    conn.execute(
        insert(Job)
        .values(
            id=job_id,
            document_id=document_id,
            kind="reprocess",
            from_stage=stage,
            status=target,
            trace_id=trace_id,
        )
        .on_conflict_do_nothing(index_elements=[Job.id])
    )
    return target
