"""``/dashboard``: one live page of the pipeline; ``/v1/dashboard`` is the data it shows.

Plain HTML, a small script and uPlot (MIT, served from here, no CDN), polling the JSON
every few seconds; no build step. A key opens it (a browser asks: HTTP Basic, the key as
the password, and sends it with the page's own requests), and the key decides what it
shows: a tenant's key that tenant's documents, jobs, failures, search and document
timelines, nothing of other tenants and no pipeline internals; an operator key (tenant
``*``) every tenant, the stages (throughput, lag, workers, DLQ, their last hour as
charts) and the alerts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from ragstream.api.deps import ServicesDep, ViewerDep
from ragstream.api.keys import is_operator
from ragstream.api.models import SearchCreate, SearchPublic
from ragstream.api.routes.search import search as search_route
from ragstream.db.models import Document, Job
from ragstream.monitor import store
from ragstream.state import DocumentStatus
from ragstream.topology import STAGE_NAMES

router = APIRouter(tags=["monitoring"])

FAILURES_SHOWN = 10
NEWEST_SHOWN = 20
HISTORY_S = 3600.0

# Static files the page loads, by name: (media type). All need a key, like the page.
STATIC = {
    "dashboard.js": "text/javascript",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}

# (stage, queued since, running since, done at) on the documents' timestamps; the embed
# stage's end is the document's completion (finalize writes no timestamp of its own).
TIMELINE_STEPS = (
    ("parse", "uploaded_at", "parsing_started_at", "parsed_at"),
    ("chunk", "parsed_at", "chunking_started_at", "chunked_at"),
    ("embed", "chunked_at", "embedding_started_at", "completed_at"),
)


def _static(name: str) -> bytes:
    return resources.files("ragstream.api").joinpath("static", name).read_bytes()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page(viewer: ViewerDep) -> HTMLResponse:
    return HTMLResponse(_static("dashboard.html"))


@router.get("/dashboard/{name}", include_in_schema=False)
def dashboard_static(name: str, viewer: ViewerDep) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        raise HTTPException(404, "no such file")
    return Response(_static(name), media_type=media_type)


def _status_counts(conn: Connection, tenant: str | None) -> dict[str, int]:
    query = select(Document.status, func.count()).group_by(Document.status)
    if tenant is not None:
        query = query.where(Document.tenant == tenant)
    counts = {s.value: 0 for s in DocumentStatus}
    counts.update({status: int(n) for status, n in conn.execute(query)})
    return counts


def _failures(conn: Connection, tenant: str | None) -> list[dict[str, Any]]:
    query = (
        select(
            Document.id,
            Document.tenant,
            Document.filename,
            Document.failed_stage,
            Document.error_class,
            Document.error_message,
            Document.failed_at,
        )
        .where(Document.status == DocumentStatus.FAILED.value)
        .order_by(Document.failed_at.desc().nulls_last())
        .limit(FAILURES_SHOWN)
    )
    if tenant is not None:
        query = query.where(Document.tenant == tenant)
    return [
        {
            "document_id": str(f.id),
            **({"tenant": f.tenant} if tenant is None else {}),
            "filename": f.filename,
            "stage": f.failed_stage,
            "error_class": f.error_class,
            "error": f.error_message,
            "failed_at": _iso(f.failed_at),
        }
        for f in conn.execute(query)
    ]


def _newest_documents(conn: Connection, tenant: str | None) -> list[dict[str, Any]]:
    query = (
        select(
            Document.id,
            Document.tenant,
            Document.filename,
            Document.status,
            Document.uploaded_at,
            Document.chunk_count,
        )
        .order_by(Document.uploaded_at.desc(), Document.id)
        .limit(NEWEST_SHOWN)
    )
    if tenant is not None:
        query = query.where(Document.tenant == tenant)
    return [
        {
            "document_id": str(d.id),
            **({"tenant": d.tenant} if tenant is None else {}),
            "filename": d.filename,
            "status": d.status,
            "uploaded_at": _iso(d.uploaded_at),
            "chunks": d.chunk_count,
        }
        for d in conn.execute(query)
    ]


def _newest_jobs(conn: Connection, tenant: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            Job.id,
            Job.document_id,
            Document.filename,
            Job.kind,
            Job.from_stage,
            Job.status,
            Job.created_at,
            Job.finished_at,
        )
        .join(Document, Document.id == Job.document_id)
        .where(Document.tenant == tenant)
        .order_by(Job.created_at.desc(), Job.id)
        .limit(NEWEST_SHOWN)
    )
    return [
        {
            "job_id": str(j.id),
            "document_id": str(j.document_id),
            "filename": j.filename,
            "kind": j.kind,
            "from_stage": j.from_stage,
            "status": j.status,
            "created_at": _iso(j.created_at),
            "finished_at": _iso(j.finished_at),
        }
        for j in rows
    ]


def _stages(conn: Connection) -> tuple[list[dict[str, Any]], str | None]:
    stage_rows = {r["stage"]: r for r in store.stage_rows(conn)}
    stages = []
    for name in STAGE_NAMES:
        row = stage_rows.get(name)
        stages.append(
            {
                "stage": name,
                "state": row["state"] if row else "unknown",
                "reason": row["reason"] if row else "the monitor has not reported",
                "lag": int(row["lag"]) if row else None,
                "workers": int(row["members"]) if row else None,
                "processed_per_min": round(float(row["processed_per_min"]), 1) if row else None,
                "arrivals_per_min": round(float(row["arrivals_per_min"]), 1) if row else None,
                "dlq": int(row["dlq_messages"]) if row else None,
                "updated_at": row["updated_at"].isoformat() if row else None,
            }
        )
    seen = [r["updated_at"] for r in stage_rows.values()]
    return stages, max(seen).isoformat() if seen else None


@router.get("/v1/dashboard")
def dashboard_data(services: ServicesDep, viewer: ViewerDep) -> dict[str, Any]:
    """What the key may see. A tenant's: its documents by status, newest documents and jobs,
    newest failures. An operator's: every tenant's documents by status (in all and per
    tenant), newest documents and failures, the stages (state, lag, workers, throughput, DLQ)
    with their last hour (``history``: aligned series for charts), and the open alerts."""
    now = datetime.now(UTC).isoformat()
    with services.engine.connect() as conn:
        if not is_operator(viewer):
            return {
                "role": "tenant",
                "tenant": viewer,
                "generated_at": now,
                "documents": _status_counts(conn, viewer),
                "newest": _newest_documents(conn, viewer),
                "jobs": _newest_jobs(conn, viewer),
                "failures": _failures(conn, viewer),
            }
        documents = _status_counts(conn, None)
        per_tenant: dict[str, dict[str, int]] = {}
        for tenant, status, n in conn.execute(
            select(Document.tenant, Document.status, func.count()).group_by(
                Document.tenant, Document.status
            )
        ):
            per_tenant.setdefault(tenant, {})[status] = int(n)
        stages, monitor_seen = _stages(conn)
        alerts = [a for a in store.list_alerts(conn, limit=100) if a["state"] == "open"]
        history = store.history_series(conn, STAGE_NAMES, HISTORY_S)
        newest = _newest_documents(conn, None)
        failures = _failures(conn, None)
    return {
        "role": "operator",
        "generated_at": now,
        "monitor_seen_at": monitor_seen,
        "documents": documents,
        "tenants": [
            {"tenant": t, "documents": dict(sorted(c.items())), "total": sum(c.values())}
            for t, c in sorted(per_tenant.items())
        ],
        "stages": stages,
        "dlq_total": sum(s["dlq"] or 0 for s in stages),
        "history": history,
        "newest": newest,
        "failures": failures,
        "alerts": alerts,
    }


def timeline(document: Document, now: datetime) -> dict[str, Any]:
    """A document's stages on one time axis: per stage a ``queued`` segment (waiting for the
    stage) and a ``running`` one, in seconds from its upload (``start_s``, ``end_s``). A
    segment the document is still in ends ``now`` (``open``); one it failed in ends at its
    ``failed_at`` (``failed``); one that ends before it starts is ``impossible``."""
    origin = document.uploaded_at
    failed_at = document.failed_at if document.status == DocumentStatus.FAILED.value else None
    segments: list[dict[str, Any]] = []

    def add(stage: str, kind: str, start: datetime, end: datetime | None) -> bool:
        """Append one segment; True when the document got past it."""
        segment: dict[str, Any] = {"stage": stage, "kind": kind, "open": False, "failed": False}
        if end is None:
            end = failed_at if failed_at is not None else now
            segment["failed" if failed_at is not None else "open"] = True
        segment |= {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "start_s": round((start - origin).total_seconds(), 3),
            "end_s": round((end - origin).total_seconds(), 3),
            "impossible": end < start,
        }
        segments.append(segment)
        return not (segment["open"] or segment["failed"])

    for stage, queued_col, running_col, done_col in TIMELINE_STEPS:
        queued = getattr(document, queued_col)
        if queued is None:
            break
        running = getattr(document, running_col)
        if not add(stage, "queued", queued, running) or running is None:
            break
        if not add(stage, "running", running, getattr(document, done_col)):
            break
    ends = [s["end_s"] for s in segments] + [0.0]
    return {
        "document_id": str(document.id),
        "filename": document.filename,
        "status": document.status,
        "origin": origin.isoformat(),
        "generated_at": now.isoformat(),
        "segments": segments,
        "failed": (
            {
                "stage": document.failed_stage,
                "at": failed_at.isoformat(),
                "at_s": round((failed_at - origin).total_seconds(), 3),
                "error_class": document.error_class,
            }
            if failed_at is not None
            else None
        ),
        "span_s": max(
            ends + ([round((failed_at - origin).total_seconds(), 3)] if failed_at else [])
        ),
    }


@router.get("/v1/dashboard/documents/{document_id}/timeline")
def document_timeline(
    document_id: uuid.UUID, services: ServicesDep, viewer: ViewerDep
) -> dict[str, Any]:
    """One document's stages on one time axis (queued and running per stage, its failure):
    a tenant's own documents, or any for an operator; 404 otherwise."""
    query = select(Document).where(Document.id == document_id)
    if not is_operator(viewer):
        query = query.where(Document.tenant == viewer)
    with Session(services.engine) as session:
        document = session.execute(query).scalar_one_or_none()
    if document is None:
        raise HTTPException(404, "no such document")
    return timeline(document, datetime.now(UTC))


@router.post("/v1/dashboard/search")
def dashboard_search(body: SearchCreate, services: ServicesDep, viewer: ViewerDep) -> SearchPublic:
    """``POST /v1/search`` for the page (which holds the key as HTTP Basic): a tenant's search
    over its own documents; 403 for an operator key, which searches no tenant's documents."""
    if is_operator(viewer):
        raise HTTPException(403, "an operator key searches no tenant's documents")
    return search_route(body, services, viewer)
