"""``/v1/notifications/s3``: an object store's S3 event notifications, as uploads and deletes.

Authenticated like every tenant route (a bearer key: the webhook target's auth
token); the documents are that key's tenant's. See :mod:`ragstream.notifications`.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from ragstream import notifications, tracing
from ragstream.api.deps import ServicesDep, TenantDep
from ragstream.api.models import ErrorPublic, NotificationAck
from ragstream.api.services import Services
from ragstream.schemas import outgoing

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.post(
    "/s3",
    status_code=202,
    responses={
        400: {"model": ErrorPublic, "description": "Not an S3 event notification."},
        401: {"model": ErrorPublic},
        413: {"model": ErrorPublic},
        503: {"model": ErrorPublic},
    },
)
async def s3_notification(
    request: Request, services: ServicesDep, tenant: TenantDep
) -> NotificationAck:
    """Objects created become upload events (read by the parse stage); objects removed
    have their documents deleted, every version."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    try:
        notification = notifications.read(payload)
    except notifications.BadNotification as exc:
        raise HTTPException(400, exc.message) from None
    return await run_in_threadpool(_apply, services, tenant, notification)


def _apply(
    services: Services, tenant: str, notification: notifications.Notification
) -> NotificationAck:
    deleted = 0
    for removed in notification.removed:
        with services.engine.begin() as conn:
            deleted += len(notifications.delete_object_documents(conn, tenant, removed.uri))
    if notification.created:
        with services.publish_lock:
            for created in notification.created:
                out = outgoing.external_upload(
                    services.settings,
                    event_id=created.event_id,
                    tenant=tenant,
                    uri=created.uri,
                    size=created.size,
                    external_id=created.uri,
                    uploaded_at=created.at,
                )
                services.producer.send(
                    out.topic, out.key, services.codec.encode(out.event), tracing.header()
                )
            services.producer.wait()
    return NotificationAck(
        uploads=len(notification.created),
        removed=len(notification.removed),
        deleted_documents=deleted,
        ignored=notification.ignored,
    )
