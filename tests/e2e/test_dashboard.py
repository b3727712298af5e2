"""The dashboard in a real headless Chromium (Debian's) against the real API, broker and DB."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from ragstream.api.app import create_app
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.monitor import store
from ragstream.monitor.logic import Alert, AlertKind, Limits, StageTracker, stage_health
from ragstream.monitor.probe import GroupProber
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, submit_all

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("RAGSTREAM_CHROMIUM", "/usr/bin/chromium")
OPERATOR_KEY = "op-key-0123456789"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    port = _free_port()
    keyed = settings.model_copy(update={"api_keys": SecretStr(f"{OPERATOR_KEY}:*")})
    app = create_app(keyed, poller=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(timeout=30)


def _monitor_look(settings: Settings) -> None:
    """What the monitor's watchdog writes: the real groups' state, and one alert."""
    engine = make_engine(settings)
    look = GroupProber(settings).look()
    now = datetime.now(UTC)
    rows = []
    for name, probe in look.groups.items():
        health = stage_health(StageTracker(name, now), probe, now, Limits.from_settings(settings))
        rows.append(
            store.StageRow(health, 0.0, look.dlq_messages[name], dict(probe.committed), probe.end)
        )
    with engine.begin() as conn:
        store.save_stages(conn, rows)
        store.open_alerts(
            conn, [Alert(AlertKind.STAGE_STALLED, "stage stalled: embed: test", stage="embed")]
        )
    engine.dispose()


def _shown(page: Any) -> dict[str, str]:
    values: dict[str, str] = page.eval_on_selector_all(
        "[data-metric]",
        "els => Object.fromEntries(els.map(e => [e.dataset.metric, e.textContent]))",
    )
    return values


def test_dashboard_shows_the_numbers_the_api_gives(
    settings: Settings, api: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}"
    submitter = prepare(settings)
    files = corpus.mixed(4, seed=31)
    submit_all(submitter, files[:2])
    assert build_runner(settings, "parse").run(max_messages=2, idle_timeout_s=10).processed == 2
    submit_all(submitter, files[2:])
    _monitor_look(settings)

    shot = Path(os.environ.get("RAGSTREAM_SCREENSHOT_DIR", tmp_path)) / "dashboard.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            anonymous = httpx.get(f"{api}/v1/dashboard", timeout=30)
            assert anonymous.status_code == 401  # the operator views need the operator key
            page = browser.new_page(
                viewport={"width": 1280, "height": 900},
                http_credentials={"username": "operator", "password": OPERATOR_KEY},
            )
            page.goto(f"{api}/dashboard")
            page.wait_for_selector("[data-metric='documents.parsed']", timeout=30_000)
            data = httpx.get(f"{api}/v1/dashboard", headers=OPERATOR, timeout=30).json()
            shown = _shown(page)
            page.screenshot(path=str(shot), full_page=True)

            for status, count in data["documents"].items():
                assert shown[f"documents.{status}"] == str(count), status
            assert data["documents"]["parsed"] == 2 and data["documents"]["uploaded"] == 2
            for stage in data["stages"]:
                for field in ("lag", "workers", "dlq", "state"):
                    assert shown[f"stages.{stage['stage']}.{field}"] == str(stage[field])
            assert shown["stages.parse.lag"] == "2"  # two uploads not consumed yet
            assert shown["alerts.open"] == str(len(data["alerts"])) == "1"
            assert shown["dlq.total"] == str(data["dlq_total"])
            assert "stage stalled" in page.inner_text("#alerts")

            # Live: a new upload appears without reloading the page.
            submit_all(submitter, corpus.mixed(5, seed=32)[4:])
            uploaded = "document.querySelector(\"[data-metric='documents.uploaded']\")"
            page.wait_for_function(f"{uploaded}.textContent === '3'", timeout=30_000)
            assert httpx.get(f"{api}/v1/alerts", headers=OPERATOR, timeout=30).json()["open"] == 1
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")
