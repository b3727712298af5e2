"""The monitor's tables (migrations 0004 and 0018): written by the monitor, read by the API
and the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    UUID,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert

from ragstream.monitor.logic import ONE_OFF_KINDS, Alert, AlertKind, StageHealth, WaitState
from ragstream.monitor.logic import wait_state as compute_wait_state
from ragstream.state import DocumentStatus

TZ = DateTime(timezone=True)
metadata = MetaData()

alerts = Table(
    "monitor_alerts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("stage", Text),
    Column("document_id", UUID(as_uuid=True)),
    Column("message", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default="{}"),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    Column("first_seen_at", TZ, nullable=False, server_default=func.now()),
    Column("last_seen_at", TZ, nullable=False, server_default=func.now()),
    Column("resolved_at", TZ),
)

stages = Table(
    "monitor_stages",
    metadata,
    Column("stage", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("lag", BigInteger, nullable=False),
    Column("members", Integer, nullable=False),
    Column("processed_per_min", Float, nullable=False),
    Column("arrivals_per_min", Float, nullable=False),
    Column("dlq_messages", BigInteger, nullable=False),
    Column("partitions", JSONB, nullable=False, server_default="{}"),
    Column("last_progress_at", TZ),
    Column("updated_at", TZ, nullable=False, server_default=func.now()),
)

waiting = Table(
    "monitor_waiting",
    metadata,
    Column("document_id", UUID(as_uuid=True), primary_key=True),
    Column("stage", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("since", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=func.now()),
)

# One row per stage and watchdog look (migration 0018): the dashboard's charts of the last hour.
history = Table(
    "monitor_stage_history",
    metadata,
    Column("stage", Text, primary_key=True),
    Column("at", TZ, primary_key=True),
    Column("processed_per_min", Float, nullable=False),
    Column("arrivals_per_min", Float, nullable=False),
    Column("lag", BigInteger, nullable=False),
)

# The stage a document in each status waits for (status -> stage).
STAGE_OF_STATUS = {
    DocumentStatus.UPLOADED: "parse",
    DocumentStatus.PARSING: "parse",
    DocumentStatus.PARSED: "chunk",
    DocumentStatus.CHUNKING: "chunk",
    DocumentStatus.CHUNKED: "embed",
    DocumentStatus.EMBEDDING: "embed",
}


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# --- alerts ---------------------------------------------------------------------------


def open_alerts(conn: Connection, raised: Sequence[Alert]) -> list[Alert]:
    """Record alerts; returns those that were not open before (new, or back after resolving)."""
    unique = {a.id: a for a in raised}
    if not unique:
        return []
    already = set(
        conn.execute(
            select(alerts.c.id)
            .where(alerts.c.id.in_(list(unique)), alerts.c.resolved_at.is_(None))
            .with_for_update()
        ).scalars()
    )
    now = func.statement_timestamp()
    stmt = insert(alerts).values(
        [
            {
                "id": alert_id,
                "kind": a.kind.value,
                "stage": a.stage,
                "document_id": _uuid(a.document_id),
                "message": a.message,
                "details": dict(a.details),
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for alert_id, a in unique.items()
        ]
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[alerts.c.id],
            set_={
                "message": stmt.excluded.message,
                "details": stmt.excluded.details,
                "last_seen_at": now,
                "occurrences": alerts.c.occurrences + 1,
                # a resolved alert that comes back starts a new episode
                "first_seen_at": case(
                    (alerts.c.resolved_at.is_(None), alerts.c.first_seen_at), else_=now
                ),
                "resolved_at": None,
            },
        )
    )
    return [a for alert_id, a in unique.items() if alert_id not in already]


def resolve_alerts(
    conn: Connection, kind: AlertKind, still_active: Iterable[uuid.UUID]
) -> list[dict[str, Any]]:
    """Close the open alerts of ``kind`` whose condition is gone; returns the closed rows."""
    keep = list(still_active)
    condition = and_(alerts.c.kind == kind.value, alerts.c.resolved_at.is_(None))
    if keep:
        condition = and_(condition, alerts.c.id.not_in(keep))
    rows = conn.execute(
        update(alerts)
        .where(condition)
        .values(resolved_at=func.statement_timestamp())
        .returning(*alerts.c)
    ).mappings()
    return [dict(r) for r in rows]


def resolve_alert(conn: Connection, alert_id: uuid.UUID) -> bool:
    """Close one open alert (a condition its raiser saw end); False if it was not open."""
    closed = conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id, alerts.c.resolved_at.is_(None))
        .values(resolved_at=func.statement_timestamp())
    )
    return bool(closed.rowcount)


def expire_one_off_alerts(conn: Connection, open_for_s: float) -> list[dict[str, Any]]:
    """One-off alerts (a DLQ record, a bad timestamp) close after ``open_for_s``."""
    cutoff = func.statement_timestamp() - timedelta(seconds=open_for_s)
    rows = conn.execute(
        update(alerts)
        .where(
            alerts.c.kind.in_([k.value for k in ONE_OFF_KINDS]),
            alerts.c.resolved_at.is_(None),
            alerts.c.last_seen_at < cutoff,
        )
        .values(resolved_at=func.statement_timestamp())
        .returning(*alerts.c)
    ).mappings()
    return [dict(r) for r in rows]


def prune(conn: Connection, older_than_s: float) -> dict[str, int]:
    """Housekeeping: resolved alerts, waiting rows nobody updated, and stage history, older
    than the cutoff; the counts of what went (``history`` only when some did).

    An open alert is kept however old it is: it is still true.
    """
    cutoff = func.statement_timestamp() - timedelta(seconds=older_than_s)
    gone_alerts = conn.execute(
        delete(alerts).where(alerts.c.resolved_at.is_not(None), alerts.c.resolved_at < cutoff)
    ).rowcount
    gone_waiting = conn.execute(delete(waiting).where(waiting.c.updated_at < cutoff)).rowcount
    gone_history = conn.execute(delete(history).where(history.c.at < cutoff)).rowcount
    gone = {"alerts": int(gone_alerts or 0), "waiting": int(gone_waiting or 0)}
    if gone_history:
        gone["history"] = int(gone_history)
    return gone


def list_alerts(
    conn: Connection, *, include_resolved_s: float = 24 * 3600, limit: int = 200
) -> list[dict[str, Any]]:
    """Open alerts and those resolved in the last ``include_resolved_s``, newest first."""
    cutoff = func.statement_timestamp() - timedelta(seconds=include_resolved_s)
    rows = conn.execute(
        select(alerts)
        .where((alerts.c.resolved_at.is_(None)) | (alerts.c.resolved_at >= cutoff))
        .order_by(alerts.c.resolved_at.is_(None).desc(), alerts.c.last_seen_at.desc())
        .limit(limit)
    ).mappings()
    return [alert_json(dict(r)) for r in rows]


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "state": "open" if row["resolved_at"] is None else "resolved",
        "stage": row["stage"],
        "document_id": str(row["document_id"]) if row["document_id"] else None,
        "message": row["message"],
        "details": row["details"],
        "occurrences": row["occurrences"],
        "first_seen": when(row["first_seen_at"]),
        "last_seen": when(row["last_seen_at"]),
        "resolved": when(row["resolved_at"]),
    }


def open_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(alerts.c.kind, func.count())
        .where(alerts.c.resolved_at.is_(None))
        .group_by(alerts.c.kind)
    )
    return {kind: int(n) for kind, n in rows}


# --- stages and waiting documents --------------------------------------------------------


@dataclass(frozen=True)
class StageRow:
    health: StageHealth
    arrivals_per_min: float
    dlq_messages: int
    committed: dict[int, int]
    end: dict[int, int]


def save_stages(conn: Connection, rows: Sequence[StageRow]) -> None:
    if not rows:
        return
    stmt = insert(stages).values(
        [
            {
                "stage": r.health.stage,
                "state": r.health.state.value,
                "reason": r.health.reason,
                "lag": r.health.lag,
                "members": r.health.members,
                "processed_per_min": r.health.processed_per_min,
                "arrivals_per_min": r.arrivals_per_min,
                "dlq_messages": r.dlq_messages,
                "partitions": {
                    str(p): {"committed": r.committed.get(p, -1), "end": end}
                    for p, end in r.end.items()
                },
                "last_progress_at": r.health.last_progress_at,
                "updated_at": func.statement_timestamp(),
            }
            for r in rows
        ]
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[stages.c.stage],
            set_={c.name: stmt.excluded[c.name] for c in stages.c if c.name != "stage"},
        )
    )


def record_history(conn: Connection, rows: Sequence[StageRow], at: datetime | None = None) -> None:
    """One history point per stage (throughput, arrivals, lag), all at one time: ``at``, else
    the statement's; a second write at the same time replaces the first."""
    if not rows:
        return
    when: Any = at if at is not None else func.statement_timestamp()
    stmt = insert(history).values(
        [
            {
                "stage": r.health.stage,
                "at": when,
                "processed_per_min": r.health.processed_per_min,
                "arrivals_per_min": r.arrivals_per_min,
                "lag": r.health.lag,
            }
            for r in rows
        ]
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[history.c.stage, history.c.at],
            set_={
                c.name: stmt.excluded[c.name] for c in history.c if c.name not in ("stage", "at")
            },
        )
    )


def history_series(
    conn: Connection, stage_names: Sequence[str], since_s: float = 3600.0
) -> dict[str, Any]:
    """The last ``since_s`` of history as aligned series, the shape a chart takes: ``at``
    (epoch seconds, ascending) and, per stage, ``throughput`` (processed/min) and ``lag``
    (None where a stage has no point at that time)."""
    cutoff = func.statement_timestamp() - timedelta(seconds=since_s)
    rows = conn.execute(
        select(history.c.stage, history.c.at, history.c.processed_per_min, history.c.lag)
        .where(history.c.at >= cutoff)
        .order_by(history.c.at)
    ).all()
    times = sorted({r.at for r in rows})
    index = {t: i for i, t in enumerate(times)}
    names = list(stage_names) + sorted({r.stage for r in rows} - set(stage_names))
    throughput: dict[str, list[float | None]] = {n: [None] * len(times) for n in names}
    lag: dict[str, list[int | None]] = {n: [None] * len(times) for n in names}
    for r in rows:
        throughput[r.stage][index[r.at]] = round(float(r.processed_per_min), 2)
        lag[r.stage][index[r.at]] = int(r.lag)
    return {
        "window_s": since_s,
        "at": [round(t.timestamp(), 3) for t in times],
        "throughput": throughput,
        "lag": lag,
    }


def stage_rows(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(stages).order_by(stages.c.stage)).mappings()]


def save_waiting(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Where waiting documents sit: (document_id, stage, partition, offset, since)."""
    unique = {r["document_id"]: r for r in rows}
    if not unique:
        return
    stmt = insert(waiting).values(list(unique.values()))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[waiting.c.document_id],
            set_={
                "stage": stmt.excluded.stage,
                "partition": stmt.excluded.partition,
                "offset": stmt.excluded.offset,
                "since": stmt.excluded.since,
                "updated_at": func.statement_timestamp(),
            },
        )
    )


def forget_waiting(conn: Connection, document_ids: Iterable[uuid.UUID]) -> None:
    done = list(document_ids)
    if done:
        conn.execute(delete(waiting).where(waiting.c.document_id.in_(done)))


def document_wait(conn: Connection, document_id: uuid.UUID, status: str) -> WaitState | None:
    """Queued or stalled, for a document in ``status``; None once it is finished.

    For the job status API: ``document_wait(conn, id, doc.status)``.
    """
    stage = STAGE_OF_STATUS.get(DocumentStatus(status))
    if stage is None:
        return None
    spot = conn.execute(
        select(waiting.c.partition, waiting.c.offset, waiting.c.since).where(
            waiting.c.document_id == document_id, waiting.c.stage == stage
        )
    ).one_or_none()
    row = conn.execute(select(stages).where(stages.c.stage == stage)).mappings().one_or_none()
    committed = (
        {p: int(v["committed"]) for p, v in row["partitions"].items()} if row is not None else None
    )
    seen = (
        {
            "lag": int(row["lag"]),
            "members": int(row["members"]),
            "processed_per_min": round(float(row["processed_per_min"]), 2),
            "looked_at": row["updated_at"].isoformat(timespec="seconds"),
        }
        if row is not None
        else {}
    )
    return compute_wait_state(
        stage,
        spot.partition if spot else None,
        spot.offset if spot else None,
        row["state"] if row else None,
        row["reason"] if row else None,
        committed,
        float(row["processed_per_min"]) if row else 0.0,
        entered=spot.since if spot else None,
        last_progress=row["last_progress_at"] if row else None,
        seen=seen,
    )


def dead_letter_of(conn: Connection, document_id: uuid.UUID) -> dict[str, Any] | None:
    """Where the document's latest dead letter sits (topic, partition, offset), if seen."""
    row = conn.execute(
        select(alerts.c.details)
        .where(alerts.c.kind == AlertKind.DLQ_MESSAGE.value, alerts.c.document_id == document_id)
        .order_by(alerts.c.last_seen_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if not row or "dlq_topic" not in row:
        return None
    return {
        "topic": row["dlq_topic"],
        "partition": int(row["dlq_partition"]),
        "offset": int(row["dlq_offset"]),
    }
