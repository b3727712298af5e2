"""Where alerts go: the database (what the API and CLI show), ``pipeline.alerts`` and metrics.

An alert is published when it opens and when it resolves, not on every repeat.
The event is acknowledged by the broker before the database transaction that
records it commits, so a crash in between publishes it again rather than never.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine

from ragstream import topology
from ragstream.consumers import metrics
from ragstream.monitor import store
from ragstream.monitor.logic import Alert, AlertKind
from ragstream.monitor.webhook import AlertWebhook, Notice
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import Codec, RegistryCodec, SchemaCatalog, SingleObjectCodec
from ragstream.schemas.codec import registry_client as make_registry_client
from ragstream.schemas.events import MONITOR_EVENT_TYPES, history, schema_json
from ragstream.schemas.outgoing import Outgoing, pipeline_alert
from ragstream.settings import Settings

log = structlog.get_logger(__name__)


def alert_catalog() -> SchemaCatalog:
    names = [cls.SCHEMA_NAME for cls in MONITOR_EVENT_TYPES]
    return SchemaCatalog(
        (schema_json(name) for name in names),
        ((n, schema) for name in names for n, schema in history(name).items()),
    )


def alert_codec(settings: Settings) -> Codec:
    """The pipeline's framing (registry or single-object) over the monitor's schemas."""
    if settings.schema_registry_url is None:
        return SingleObjectCodec(alert_catalog())
    return RegistryCodec(make_registry_client(settings), catalog=alert_catalog())


def _event(
    settings: Settings, alert_id: str, kind: str, row: dict[str, Any], state: str
) -> Outgoing:
    return pipeline_alert(
        settings,
        alert_id=alert_id,
        kind=kind,
        stage=row.get("stage"),
        document_id=str(row["document_id"]) if row.get("document_id") else None,
        message=row["message"],
        state=state,
        details={str(k): str(v) for k, v in (row.get("details") or {}).items()},
        first_seen_at=row.get("first_seen_at") or datetime.now(UTC),
    )


class AlertSink:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        producer: EventProducer | None = None,
        codec: Codec | None = None,
        webhook: AlertWebhook | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.producer = producer or EventProducer(settings)
        self.codec = codec or alert_codec(settings)
        self.topic = settings.topic(topology.ALERTS)
        self.webhook = webhook or (AlertWebhook(settings) if settings.alert_webhook_url else None)

    def _notify(self, notices: Iterable[Notice]) -> None:
        """After the database has them: a failed POST is logged, never undoes the alert."""
        if self.webhook is not None:
            for notice in notices:
                self.webhook.send(notice)

    def _notify_resolved(self, rows: Iterable[dict[str, Any]]) -> None:
        self._notify(
            Notice(
                str(r["id"]),
                r["kind"],
                "resolved",
                r["message"],
                r.get("stage"),
                str(r["document_id"]) if r.get("document_id") else None,
                {str(k): str(v) for k, v in (r.get("details") or {}).items()},
                r.get("first_seen_at"),
            )
            for r in rows
        )

    def _publish(self, events: Iterable[Outgoing]) -> None:
        for out in events:
            self.producer.send(out.topic, key=out.key, value=self.codec.encode(out.event))
        self.producer.wait()

    def open(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Record alerts; publish and count the ones that were not open already."""
        if not alerts:
            return []
        with self.engine.begin() as conn:
            new = store.open_alerts(conn, alerts)
            self._publish(
                _event(
                    self.settings,
                    str(a.id),
                    a.kind.value,
                    {
                        "stage": a.stage,
                        "document_id": a.document_id,
                        "message": a.message,
                        "details": dict(a.details),
                    },
                    "open",
                )
                for a in new
            )
        for a in new:
            metrics.ALERTS.labels(a.kind.value).inc()
            log.warning(
                "alert_opened",
                kind=a.kind.value,
                stage=a.stage,
                document_id=a.document_id,
                alert_id=str(a.id),
                message=a.message,
            )
        self._notify(
            Notice(str(a.id), a.kind.value, "open", a.message, a.stage, a.document_id, a.details)
            for a in new
        )
        return new

    def resolve(self, kind: AlertKind, still_active: Iterable[Any]) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            rows = store.resolve_alerts(conn, kind, still_active)
            self._publish(
                _event(self.settings, str(r["id"]), r["kind"], r, "resolved") for r in rows
            )
        for r in rows:
            log.info("alert_resolved", kind=r["kind"], stage=r["stage"], alert_id=str(r["id"]))
        self._notify_resolved(rows)
        return rows

    def expire(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            rows = store.expire_one_off_alerts(conn, self.settings.event_alert_open_s)
            self._publish(
                _event(self.settings, str(r["id"]), r["kind"], r, "resolved") for r in rows
            )
        self._notify_resolved(rows)
        return rows

    def close(self) -> None:
        self.producer.close()
        if self.webhook is not None:
            self.webhook.close()
