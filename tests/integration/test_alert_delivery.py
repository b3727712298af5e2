"""Alerts posted to a webhook: a real HTTP receiver on the loopback, retries and de-duplication."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from ragstream.db.engine import make_engine
from ragstream.monitor.alerts import AlertSink
from ragstream.monitor.logic import Alert, AlertKind
from ragstream.monitor.webhook import AlertWebhook, Notice
from ragstream.settings import Settings
from tests.pipeline import prepare


class Receiver:
    """An HTTP server that records each POSTed JSON body; the first ``fail`` answers are 503."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = 503 if len(outer.answers) < outer.fail else 200
                outer.answers.append(code)
                if code == 200:
                    outer.bodies.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


def _hooked(settings: Settings, url: str, fmt: str = "alertmanager") -> Settings:
    return settings.model_copy(
        update={
            "alert_webhook_url": SecretStr(url),
            "alert_webhook_format": fmt,
            "retry_backoff_initial_s": 0.01,
            "retry_backoff_max_s": 0.05,
        }
    )


def test_webhook_retries_a_503_then_posts_once_per_state() -> None:
    flaky = Receiver(fail=2)
    settings = _hooked(Settings(), flaky.url)
    webhook = AlertWebhook(settings)
    try:
        notice = Notice("a1", "stage_stalled", "open", "stage stalled: embed", "embed")
        assert webhook.send(notice)
        assert flaky.answers == [503, 503, 200]
        assert webhook.send(notice)  # the same state again: not posted
        assert len(flaky.answers) == 3
        assert webhook.send(Notice("a1", "stage_stalled", "resolved", "ok", "embed"))
        assert [b["status"] for b in flaky.bodies] == ["firing", "resolved"]
        first = flaky.bodies[0]
        assert first["version"] == "4"
        (alert,) = first["alerts"]
        assert alert["labels"] == {
            "alertname": "RagstreamStageStalled",
            "kind": "stage_stalled",
            "severity": "page",
            "stage": "embed",
        }
        assert alert["fingerprint"] == "a1"
    finally:
        webhook.close()
        flaky.stop()


def test_webhook_gives_up_after_its_attempts_and_says_so() -> None:
    down = Receiver(fail=100)
    settings = _hooked(Settings(), down.url).model_copy(update={"alert_webhook_attempts": 3})
    webhook = AlertWebhook(settings)
    try:
        assert not webhook.send(Notice("a2", "sla_exceeded", "open", "late"))
        assert down.answers == [503, 503, 503]
        # Not delivered, so not remembered: the next try posts again.
        down.fail = 0
        assert webhook.send(Notice("a2", "sla_exceeded", "open", "late"))
        assert down.answers[-1] == 200
    finally:
        webhook.close()
        down.stop()


@pytest.mark.integration
def test_sink_posts_slack_json_on_open_and_resolve_not_on_repeats(
    settings: Settings, receiver: Receiver
) -> None:
    hooked = _hooked(settings, receiver.url, "slack")
    prepare(hooked)
    engine = make_engine(hooked)
    sink = AlertSink(hooked, engine)
    try:
        alert = Alert(AlertKind.CONSUMER_STALLED, "consumer stalled: embed", stage="embed")
        assert sink.open([alert]) == [alert]
        assert sink.open([alert]) == []  # still open: counted, not posted
        assert len(receiver.bodies) == 1
        text = receiver.bodies[0]["text"]
        assert "RagstreamConsumerStalled" in text and "open" in text and "stage=embed" in text
        closed = sink.resolve(AlertKind.CONSUMER_STALLED, [])
        assert [str(r["id"]) for r in closed] == [str(alert.id)]
        assert len(receiver.bodies) == 2 and "resolved" in receiver.bodies[1]["text"]
        # Back again after resolving: a new episode, posted again.
        assert sink.open([alert]) == [alert]
        assert len(receiver.bodies) == 3
    finally:
        sink.close()
        engine.dispose()
