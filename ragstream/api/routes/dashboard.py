"""``/dashboard``: one live page of the pipeline; ``/v1/dashboard`` is the data it shows.

Plain HTML and a small script, polling the JSON every few seconds; no build step.
All of it needs an operator key: a browser asks for one (HTTP Basic, the key as the
password) and sends it with the page's own requests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from ragstream.api.deps import OperatorDep, ServicesDep
from ragstream.db.models import Document
from ragstream.monitor import store
from ragstream.progress import status_counts
from ragstream.state import DocumentStatus
from ragstream.topology import STAGE_NAMES

router = APIRouter(tags=["monitoring"], dependencies=[OperatorDep])

FAILURES_SHOWN = 10


def _static(name: str) -> bytes:
    return resources.files("ragstream.api").joinpath("static", name).read_bytes()


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page() -> HTMLResponse:
    return HTMLResponse(_static("dashboard.html"))


@router.get("/dashboard/dashboard.js", include_in_schema=False)
def dashboard_script() -> Response:
    return Response(_static("dashboard.js"), media_type="text/javascript")


@router.get("/v1/dashboard")
def dashboard_data(services: ServicesDep) -> dict[str, Any]:
    """Documents by status, stages (state, lag, throughput, DLQ), newest failures, alerts."""
    engine = services.engine
    documents = {s.value: 0 for s in DocumentStatus} | status_counts(engine)
    with engine.connect() as conn:
        stage_rows = {r["stage"]: r for r in store.stage_rows(conn)}
        failures = conn.execute(
            select(
                Document.id,
                Document.filename,
                Document.failed_stage,
                Document.error_class,
                Document.error_message,
                Document.failed_at,
            )
            .where(Document.status == DocumentStatus.FAILED.value)
            .order_by(Document.failed_at.desc().nulls_last())
            .limit(FAILURES_SHOWN)
        ).all()
        alerts = [a for a in store.list_alerts(conn, limit=100) if a["state"] == "open"]
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
    return {
        "generated_at": datetime.now(UTC).isoformat(),
        "monitor_seen_at": max(seen).isoformat() if seen else None,
        "documents": documents,
        "stages": stages,
        "dlq_total": sum(s["dlq"] or 0 for s in stages),
        "failures": [
            {
                "document_id": str(f.id),
                "filename": f.filename,
                "stage": f.failed_stage,
                "error_class": f.error_class,
                "error": f.error_message,
                "failed_at": f.failed_at.isoformat() if f.failed_at else None,
            }
            for f in failures
        ],
        "alerts": alerts,
    }
