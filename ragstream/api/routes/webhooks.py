"""``/v1/webhooks/llamaparse``: LlamaParse's signed callback, accepted once per webhook id.

Nothing is read from the body before the signature holds, and no more of it is
read than ``WEBHOOK_MAX_BYTES`` (a callback names its job; it needs no more). The result is
taken from the body when it carries the pages, else fetched from LlamaParse;
either way it goes through the same idempotent write as the poller's.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import exists, select

from ragstream.api import metrics
from ragstream.api.deps import ServicesDep
from ragstream.api.models import ErrorPublic, WebhookAck
from ragstream.api.services import Services
from ragstream.db.models import LlamaParseJob, WebhookDelivery
from ragstream.llamaparse import results
from ragstream.llamaparse.client import LlamaParseClient, LlamaParseRejected, pages_from
from ragstream.llamaparse.signature import WebhookRejected, verify

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

SUCCESS_EVENTS = frozenset({"parse.success", "parse.partial_success"})
FAILURE_EVENTS = frozenset({"parse.error", "parse.cancelled"})


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` (declared or received)."""
    too_large = f"webhook body is larger than {limit} bytes (WEBHOOK_MAX_BYTES)"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _reject(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _reject(413, too_large)
    return bytes(body)


def _reject(status: int, message: str) -> HTTPException:
    metrics.WEBHOOKS.labels("rejected").inc()
    return HTTPException(status, message)


@router.post(
    "/llamaparse",
    responses={
        400: {"model": ErrorPublic},
        401: {"model": ErrorPublic},
        404: {"model": ErrorPublic, "description": "Unknown job; send again later."},
        413: {"model": ErrorPublic, "description": "Body over WEBHOOK_MAX_BYTES."},
        503: {"model": ErrorPublic},
    },
)
async def llamaparse_webhook(request: Request, services: ServicesDep) -> WebhookAck:
    """A LlamaParse job ended (Standard Webhooks signature required)."""
    secret = services.settings.webhook_secret
    if secret is None:
        raise _reject(401, "webhooks are not configured (no WEBHOOK_SECRET)")
    body = await _body(request, services.settings.webhook_max_bytes)
    try:
        verified = verify(
            secret.get_secret_value(),
            request.headers,
            body,
            tolerance_s=services.settings.webhook_tolerance_s,
        )
    except WebhookRejected as exc:
        raise _reject(exc.status, exc.message) from None
    try:
        payload = json.loads(body)
    except ValueError:
        raise _reject(400, "webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise _reject(400, "webhook body is not a JSON object")
    nested = payload.get("data")
    data: dict[str, Any] = nested if isinstance(nested, dict) else payload
    job_id = data.get("job_id") or payload.get("job_id")
    event = payload.get("event_type") or payload.get("event") or "parse.success"
    if not isinstance(job_id, str) or not job_id or not isinstance(event, str):
        raise _reject(400, "webhook body names no job_id")
    outcome = await run_in_threadpool(_handle, services, verified.id, job_id, event, data)
    metrics.WEBHOOKS.labels(outcome.value).inc()
    if outcome is results.Outcome.UNKNOWN:
        raise HTTPException(404, f"no LlamaParse job {job_id} here (yet)")
    return WebhookAck(outcome=outcome.value)


def _handle(
    services: Services, delivery_id: str, job_id: str, event: str, data: dict[str, Any]
) -> results.Outcome:
    with services.engine.connect() as conn:
        if conn.execute(select(exists().where(WebhookDelivery.id == delivery_id))).scalar_one():
            return results.Outcome.DUPLICATE
        if not conn.execute(select(exists().where(LlamaParseJob.id == job_id))).scalar_one():
            return results.Outcome.UNKNOWN
    if event in FAILURE_EVENTS:
        reason = data.get("error") or data.get("error_message") or "no reason given"
        return results.fail(
            services.ctx,
            job_id,
            f"LlamaParse job failed: {reason}"[:1000],
            error_class="LlamaParseFailed",
            delivery_id=delivery_id,
        )
    if event not in SUCCESS_EVENTS:
        return results.Outcome.IGNORED  # e.g. parse.pending: nothing to do yet
    if "json" in data or "pages" in data:
        try:
            pages = pages_from(data)
        except LlamaParseRejected as exc:
            raise HTTPException(400, exc.message) from None
    else:
        try:
            with LlamaParseClient(services.settings) as client:
                pages = client.result(job_id)
        except LlamaParseRejected as exc:
            return results.fail(
                services.ctx,
                job_id,
                exc.message,
                error_class=exc.error_class,
                delivery_id=delivery_id,
            )
    with services.publish_lock:
        return results.complete(
            services.ctx,
            services.producer,
            job_id,
            pages,
            via="webhook",
            delivery_id=delivery_id,
        )
