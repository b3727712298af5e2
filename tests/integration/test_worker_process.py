"""A real `ragstream worker` process: its health endpoints and its clean stop."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from ragstream.devstack.process import free_port
from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_runner import _committed
from tests.pipeline import Workers, prepare, submit_all, wait_terminal

pytestmark = pytest.mark.integration


def _get(url: str, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_health_endpoints_and_sigterm_commits_everything(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    worker_settings = settings.model_copy(update={"health_port": port})
    submitter = prepare(settings)
    workers = Workers(worker_settings, tmp_path / "logs")
    try:
        proc = workers.start("parse")
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/livez").status_code == 200
        deadline = time.monotonic() + 60
        while _get(f"{base}/readyz").status_code != 200:  # ready once it owns partitions
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.3)

        files = corpus.mixed(6, seed=21)
        ids = submit_all(submitter, files)
        deadline = time.monotonic() + 90
        while _committed(settings, "parse") < 6:
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.3)
        metrics = _get(f"{base}/metrics").text
        assert 'ragstream_stage_messages_total{outcome="processed",stage="parse"} 6.0' in metrics
        assert "ragstream_stage_batch_seconds_bucket" in metrics
        assert "ragstream_consumer_lag" in metrics

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, workers.logs()
        # After a clean stop nothing is left to redeliver: the committed offsets cover all six.
        assert _committed(settings, "parse") == 6
        assert "stopped" in workers.logs()

        # The next worker finds nothing to do for parse; the rest of the pipeline finishes.
        workers.settings = settings  # health port 0: any free port per worker
        workers.start_all(["parse", "chunk", "embed", "finalize"])
        states = wait_terminal(settings, ids, timeout_s=120, workers=workers)
        assert {s.status for s in states.values()} == {"complete"}
    finally:
        workers.stop_all()
