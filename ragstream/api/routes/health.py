"""``/healthz``, ``/readyz`` and ``/metrics``: no API key needed."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from ragstream.api.deps import ServicesDep
from ragstream.api.models import HealthPublic
from ragstream.db.migrate import require_head
from ragstream.errors import SchemaNotAtHead

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 3.0


@router.get("/healthz")
def healthz() -> HealthPublic:
    """The process is up."""
    return HealthPublic(status="ok")


@router.get("/readyz", responses={503: {"model": HealthPublic}})
def readyz(services: ServicesDep, response: Response) -> HealthPublic:
    """The database is at the migration head and the broker answers."""
    checks: dict[str, str] = {}
    try:
        require_head(services.engine)
        checks["database"] = "ok"
    except SchemaNotAtHead as exc:
        checks["database"] = exc.message
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        services.admin.list_topics(timeout=BROKER_TIMEOUT_S)
        checks["broker"] = "ok"
    except Exception as exc:  # KafkaException and friends: the answer is "not ready"
        checks["broker"] = f"unreachable: {exc}"[:300]
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = 503
    return HealthPublic(status="ready" if ready else "not ready", checks=checks)


@router.get("/metrics", response_class=Response)
def prometheus_metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
