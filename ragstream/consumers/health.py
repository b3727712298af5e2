"""Liveness, readiness and metrics over HTTP, one small server per worker.

``/livez`` fails when the loop has not turned for ``liveness_max_age_s`` (a hung
worker); ``/readyz`` fails until the worker owns partitions; ``/metrics`` is
Prometheus, including the lag of the owned partitions (refreshed by the loop).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragstream.consumers import metrics

if TYPE_CHECKING:
    from ragstream.consumers.runner import StageRunner


def refresh_lag(consumer: Consumer, stage: str) -> None:
    """Lag of the owned partitions, from the watermarks the fetcher already knows.

    Called from the consumer's own thread: the consumer is not shared with the
    HTTP threads, which only read the gauge.
    """
    assignment = consumer.assignment()
    positions = consumer.position(assignment) if assignment else []
    for tp in positions:
        try:
            low, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            continue
        position = tp.offset if tp.offset >= 0 else low
        if high >= 0:
            metrics.LAG.labels(stage, str(tp.partition)).set(max(high - position, 0))


class HealthServer:
    def __init__(self, runner: StageRunner, port: int) -> None:
        self.runner = runner
        self.server = ThreadingHTTPServer(("0.0.0.0", port), self._handler())
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def heartbeat_age_s(self) -> float:
        return time.monotonic() - self.runner.heartbeat

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                age = health.heartbeat_age_s()
                limit = health.runner.settings.liveness_max_age_s
                if self.path == "/livez":
                    self._json(200 if age < limit else 503, {"heartbeat_age_s": round(age, 3)})
                elif self.path == "/readyz":
                    ready = health.runner.ready
                    self._json(200 if ready else 503, {"ready": ready})
                elif self.path == "/metrics":
                    metrics.HEARTBEAT_AGE.labels(health.runner.stage.name).set(age)
                    body = generate_latest()
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
