"""Alerts straight to a person: a POST to a webhook (Alertmanager's or Slack's JSON).

Each alert is posted when it opens and when it resolves, once per state: a
repeat (the same alert raised again while open, or a restarted monitor
re-opening it) is not posted again. A failed POST (no answer, 429 or 5xx) is
retried with the pipeline's backoff (:class:`ragstream.errors.RetryPolicy`);
after ``alert_webhook_attempts`` it is logged and dropped: the alert stays in
the database, on ``pipeline.alerts`` and in ``ragstream alerts``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from ragstream.errors import RetryPolicy
from ragstream.settings import Settings

log = structlog.get_logger(__name__)

SEVERITY = {
    "stage_stalled": "page",
    "consumer_stalled": "page",
    "dependency_down": "page",
}
"""Alert kinds that page; the others are tickets (as in deploy/prometheus/alerts.yaml)."""

REMEMBERED = 10_000  # alerts whose last posted state is kept for de-duplication


@dataclass(frozen=True)
class Notice:
    """One alert opening or resolving, as the webhook tells it."""

    alert_id: str
    kind: str
    state: str  # open | resolved
    message: str
    stage: str | None = None
    document_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    first_seen_at: datetime | None = None

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            "alertname": "Ragstream" + "".join(w.title() for w in self.kind.split("_")),
            "kind": self.kind,
            "severity": SEVERITY.get(self.kind, "ticket"),
        }
        if self.stage:
            labels["stage"] = self.stage
        if self.document_id:
            labels["document_id"] = self.document_id
        return labels


def alertmanager_body(notice: Notice, now: datetime) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4), one alert per POST."""
    status = "firing" if notice.state == "open" else "resolved"
    starts = (notice.first_seen_at or now).isoformat()
    labels = notice.labels
    return {
        "version": "4",
        "groupKey": f"ragstream:{notice.alert_id}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ragstream-monitor",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {"summary": notice.message},
        "externalURL": "",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": notice.message, **dict(notice.details)},
                "startsAt": starts,
                "endsAt": now.isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": notice.alert_id,
            }
        ],
    }


def slack_body(notice: Notice) -> dict[str, Any]:
    """A Slack incoming webhook's message: one line of text and the details."""
    mark = ":red_circle:" if notice.state == "open" else ":white_check_mark:"
    where = " ".join(f"{k}={v}" for k, v in notice.labels.items() if k != "alertname")
    lines = [f"{mark} *{notice.labels['alertname']}* {notice.state}: {notice.message}", where]
    lines += [f"{k}: {v}" for k, v in notice.details.items()]
    return {"text": "\n".join(lines)}


class AlertWebhook:
    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert settings.alert_webhook_url is not None
        self.url = settings.alert_webhook_url.get_secret_value()
        self.format = settings.alert_webhook_format
        self.client = client or httpx.Client(timeout=10.0)
        self.sleep = sleep
        self.policy = RetryPolicy(
            initial_s=settings.retry_backoff_initial_s,
            max_s=settings.retry_backoff_max_s,
            max_attempts=settings.alert_webhook_attempts,
        )
        self.delivered: OrderedDict[str, str] = OrderedDict()  # alert id -> last state posted

    def body(self, notice: Notice) -> dict[str, Any]:
        if self.format == "slack":
            return slack_body(notice)
        return alertmanager_body(notice, datetime.now(UTC))

    def send(self, notice: Notice) -> bool:
        """POST once per change of state of an alert; True when delivered now or before."""
        if self.delivered.get(notice.alert_id) == notice.state:
            return True
        body = self.body(notice)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self.client.post(self.url, json=body)
                if answer.status_code < 300:
                    self._remember(notice.alert_id, notice.state)
                    return True
                error = f"HTTP {answer.status_code}"
                retry = answer.status_code == 429 or answer.status_code >= 500
            except httpx.HTTPError as exc:
                error, retry = f"{type(exc).__name__}: {exc}", True
            if not retry or attempt >= self.policy.max_attempts:
                log.error(
                    "alert_webhook_failed",
                    alert_id=notice.alert_id,
                    kind=notice.kind,
                    attempts=attempt,
                    error=error[:300],
                )
                return False
            self.sleep(self.policy.backoff(attempt))

    def _remember(self, alert_id: str, state: str) -> None:
        self.delivered[alert_id] = state
        self.delivered.move_to_end(alert_id)
        while len(self.delivered) > REMEMBERED:
            self.delivered.popitem(last=False)

    def close(self) -> None:
        self.client.close()
