"""``GET /v1/alerts``: the monitor's open alerts and the recently resolved ones.

Every tenant's documents and errors: an operator key only (see ``deps.require_operator``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ragstream.api.deps import OperatorDep, ServicesDep
from ragstream.monitor import store

router = APIRouter(tags=["monitoring"], dependencies=[OperatorDep])


@router.get("/v1/alerts")
def list_alerts(
    services: ServicesDep,
    state: Annotated[Literal["open", "all"], Query(description="open, or all recent")] = "all",
    hours: Annotated[float, Query(gt=0, le=24 * 30, description="Resolved this recently")] = 24,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Each alert: kind, stage, document id when there is one, first seen, message."""
    with services.engine.connect() as conn:
        found = store.list_alerts(conn, include_resolved_s=hours * 3600, limit=limit)
    if state == "open":
        found = [a for a in found if a["state"] == "open"]
    return {"alerts": found, "open": sum(1 for a in found if a["state"] == "open")}
