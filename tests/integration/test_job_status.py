"""The job API says where a waiting document is and why: stalled, then queued, with real workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_api_server import ApiServer, serve, upload
from tests.integration.test_monitor import MonitorProcess, _poll
from tests.pipeline import Workers, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> Iterator[tuple[ApiServer, Workers]]:
    short = settings.model_copy(
        update={
            "monitor_metrics_port": 0,
            "monitor_interval_s": 1.0,
            "stall_after_s": 5.0,
            "partitions": 2,
            "max_batch_size": 1,
        }
    )
    for api in serve(short):
        workers = Workers(api.settings, tmp_path / "logs")
        monitor = MonitorProcess(api.settings, tmp_path / "monitor.log")
        try:
            yield api, workers
        finally:
            for procs in workers.procs.values():
                for proc in procs:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGCONT)
            workers.stop_all()
            monitor.stop()


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _throttle(proc: subprocess.Popen[bytes], stop: threading.Event) -> None:
    """A slow worker: runs a fifth of the time (progress every second, never a stall)."""
    while not stop.is_set() and proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.15)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.6)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)


def test_waiting_documents_are_stalled_then_queued_with_decreasing_positions(
    world: tuple[ApiServer, Workers],
) -> None:
    api, workers = world
    workers.start_all(["parse", "chunk", "finalize"])  # no embed worker: embed stalls
    with api.client() as client:
        files = [(f"doc-{i}.md", corpus.markdown(700 + i, sections=6)) for i in range(6)]
        answer = upload(client, *files)
        assert answer.status_code == 202, answer.text
        jobs = [d["job_id"] for d in answer.json()["documents"]]
        documents = [d["document_id"] for d in answer.json()["documents"]]

        def stalled() -> dict[str, Any] | None:
            body = _job(client, jobs[-1])
            wait = body.get("wait") or {}
            return body if wait.get("state") == "stalled" and wait["stage"] == "embed" else None

        body = _poll(stalled, 120, "the job API never said embed is stalled")
        wait = body["wait"]
        print("stalled:", json.dumps(wait))
        assert body["status"] == "chunked" and body["current_stage"] == "embed"
        assert wait["since"] is not None and wait["estimated_start"] is None
        assert "no worker" in wait["reason"], wait
        assert wait["seen"]["members"] == 0 and wait["seen"]["lag"] > 0
        assert body["stages"]["parse"]["duration_s"] is not None
        assert body["stages"]["chunk"]["finished_at"] is not None
        document = client.get(f"/v1/documents/{documents[-1]}").json()
        assert document["wait"]["state"] == "stalled"

        # The CLI shows the same.
        shown = subprocess.run(
            [sys.executable, "-m", "ragstream.cli", "status", documents[-1], "--json"],
            env={**os.environ, **settings_env(api.settings)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        assert view["wait"]["state"] == "stalled" and view["wait"]["stage"] == "embed"
        assert view["stages"]["parse"]["duration_s"] is not None

        # A slow embed worker: the documents are queued, and their positions go down.
        # Followed: the document furthest back in its partition.
        ahead = {j: (_job(client, j).get("wait") or {}).get("position") or 0 for j in jobs}
        last = max(ahead, key=lambda j: ahead[j])
        assert ahead[last] >= 2, ahead
        stop = threading.Event()
        slow = threading.Thread(target=_throttle, args=(workers.start("embed"), stop))
        slow.start()
        try:
            positions: list[int] = []

            def queued_twice() -> bool:
                body = _job(client, last)
                wait = body.get("wait") or {}
                moved = not positions or wait.get("position") != positions[-1]
                if wait.get("state") == "queued" and wait.get("position") is not None and moved:
                    positions.append(wait["position"])
                    print("queued:", json.dumps(wait))
                return len(positions) >= 2

            _poll(queued_twice, 120, "the job API never showed the document queued, moving")
        finally:
            stop.set()
            slow.join()
        assert positions == sorted(positions, reverse=True), positions
        assert positions[0] > positions[-1]
