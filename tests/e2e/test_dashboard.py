"""The dashboard in a real headless Chromium (Debian's) against the real API, broker and DB."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import text

from ragstream.api.app import create_app
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.errors import DependencyUnavailable
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
# Two tenants (issue 20, item 4): each sees its own documents on /dashboard, nothing else.
TENANT_KEYS = {"tenant-otter-5a1": "otter-key-0123456789", "tenant-lynx-9c4": "lynx-key-0123456789"}
API_KEYS = ",".join([f"{OPERATOR_KEY}:*", *(f"{k}:{t}" for t, k in TENANT_KEYS.items())])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    port = _free_port()
    keyed = settings.model_copy(update={"api_keys": SecretStr(API_KEYS)})
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
    # As the monitor does each interval: a look refused by a broker still electing leaders
    # (NOT_LEADER_FOR_PARTITION just after the topics were made) is tried again.
    deadline = time.monotonic() + 60
    while True:
        try:
            look = GroupProber(settings).look()
            break
        except DependencyUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    now = datetime.now(UTC)
    rows = []
    for name, probe in look.groups.items():
        health = stage_health(StageTracker(name, now), probe, now, Limits.from_settings(settings))
        rows.append(
            store.StageRow(health, 0.0, look.dlq_messages[name], dict(probe.committed), probe.end)
        )
    with engine.begin() as conn:
        store.save_stages(conn, rows)
        # three looks of the last hour, with numbers of their own, for the charts
        for look_no, minutes_ago in enumerate((50, 25, 1), start=1):
            store.record_history(
                conn,
                [
                    replace(
                        r,
                        health=replace(
                            r.health,
                            processed_per_min=12.5 * look_no + i,
                            lag=100 * look_no + 10 * i,
                        ),
                    )
                    for i, r in enumerate(rows)
                ],
                at=now - timedelta(minutes=minutes_ago),
            )
        # and one too old to be charted
        store.record_history(conn, rows, at=now - timedelta(hours=2))
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

            # The charts draw the API's last hour: uPlot's own data, read back from the page.
            history = data["history"]
            assert len(history["at"]) == 3 and shown["history.points"] == "3"
            assert history["throughput"]["parse"] == [12.5, 25.0, 37.5]
            page.wait_for_function(
                "window.dashboard.plotted.lag && window.dashboard.plotted.lag.at.length === 3"
            )
            plotted = page.evaluate("window.dashboard.plotted")
            live = page.evaluate(
                "Object.fromEntries(Object.entries(window.dashboard.charts)"
                ".map(([k, u]) => [k, {data: u.data, labels: u.series.map(s => s.label)}]))"
            )
            for field in ("throughput", "lag"):
                assert plotted[field]["at"] == history["at"], field
                assert plotted[field]["series"] == history[field], field
                names = [s["stage"] for s in data["stages"]]
                assert live[field]["data"] == [history["at"], *(history[field][n] for n in names)]
                assert live[field]["labels"][1:] == names
            canvas = page.eval_on_selector("#chart-lag canvas", "c => [c.width, c.height]")
            assert canvas[0] > 100 and canvas[1] > 100

            # Live: a new upload appears without reloading the page.
            submit_all(submitter, corpus.mixed(5, seed=32)[4:])
            uploaded = "document.querySelector(\"[data-metric='documents.uploaded']\")"
            page.wait_for_function(f"{uploaded}.textContent === '3'", timeout=30_000)
            assert httpx.get(f"{api}/v1/alerts", headers=OPERATOR, timeout=30).json()["open"] == 1
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")


def _browser_page(browser: Any, key: str) -> Any:
    """A page whose browser answers the dashboard's HTTP Basic challenge with ``key``."""
    return browser.new_page(
        viewport={"width": 1280, "height": 900},
        http_credentials={"username": "someone", "password": key},
    )


def _wait_loaded(page: Any, api: str) -> None:
    page.goto(f"{api}/dashboard")
    page.wait_for_selector("[data-metric='documents.uploaded']", timeout=30_000)


def test_a_tenant_sees_its_own_documents_the_operator_every_tenant_and_the_stages(
    settings: Settings, api: str
) -> None:
    """Issue 20, item 4: two tenants upload through the API; each one's dashboard shows its
    own filenames and none of the other's; the operator's shows both and the stage view."""
    from playwright.sync_api import sync_playwright

    prepare(settings)  # the topics
    (otter, otter_key), (lynx, _) = TENANT_KEYS.items()
    names = {otter: "otter-quarterly-report-17.md", lynx: "lynx-secret-roadmap-42.md"}
    ids = {}
    for (tenant, key), (_, data) in zip(TENANT_KEYS.items(), corpus.mixed(2, seed=41), strict=True):
        answer = httpx.post(
            f"{api}/v1/documents",
            headers={"Authorization": f"Bearer {key}"},
            files=[("file", (names[tenant], data))],
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        ids[tenant] = answer.json()["documents"][0]["document_id"]
    _monitor_look(settings)

    for tenant, key in TENANT_KEYS.items():
        data = httpx.get(
            f"{api}/v1/dashboard", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).json()
        assert data["role"] == "tenant" and data["tenant"] == tenant
        assert sum(data["documents"].values()) == 1
        assert [d["filename"] for d in data["newest"]] == [names[tenant]]
        assert [j["filename"] for j in data["jobs"]] == [names[tenant]]
        assert not {"stages", "alerts", "history", "tenants", "dlq_total"} & set(data)
    other = httpx.get(
        f"{api}/v1/dashboard/documents/{ids[lynx]}/timeline",
        headers={"Authorization": f"Bearer {otter_key}"},
        timeout=30,
    )
    assert other.status_code == 404  # another tenant's document is not there for it
    search = f"{api}/v1/dashboard/search"
    found = httpx.post(
        search, json={"query": "report"}, headers={"Authorization": f"Bearer {otter_key}"}
    )
    assert found.status_code == 200 and found.json()["hits"] == []  # nothing complete yet
    assert httpx.post(search, json={"query": "report"}, headers=OPERATOR).status_code == 403

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for tenant, key in TENANT_KEYS.items():
                page = _browser_page(browser, key)
                _wait_loaded(page, api)
                page.wait_for_selector("#newest td.filename", timeout=30_000)
                text = page.inner_text("body")
                mine, theirs = names[tenant], names[lynx if tenant == otter else otter]
                assert mine in text and theirs not in text, tenant
                assert page.inner_text("#jobs").count(mine) == 1
                assert page.is_hidden("#stages") and page.is_hidden("#chart-lag")
                assert page.is_hidden("#alerts") and page.is_visible("#search-form")
                assert page.evaluate("document.body.dataset.role") == "tenant"
                # nothing of other tenants reached the page at all, shown or not
                assert theirs not in page.content()
                assert _shown(page)["documents.uploaded"] == "1"
                page.fill("#search-query", "quarterly roadmap")
                page.click("#search-form button")
                page.wait_for_function(
                    "document.getElementById('search-error').textContent.includes('nothing')"
                )
                page.close()

            page = _browser_page(browser, OPERATOR_KEY)
            _wait_loaded(page, api)
            page.wait_for_selector("#stages td[data-metric='stages.parse.lag']", timeout=30_000)
            text = page.inner_text("body")
            assert names[otter] in text and names[lynx] in text
            assert page.is_visible("#stages") and page.is_visible("#chart-lag canvas")
            assert page.is_hidden("#search-form")
            shown = _shown(page)
            assert shown["documents.uploaded"] == "2"
            assert shown[f"tenants.{otter}.total"] == shown[f"tenants.{lynx}.total"] == "1"
            assert shown["alerts.open"] == "1" and "stage stalled" in page.inner_text("#alerts")
        finally:
            browser.close()


def test_a_document_timeline_draws_the_segments_the_endpoint_gives(
    settings: Settings, api: str, tmp_path: Path
) -> None:
    """Issue 20, item 5: a document's stages on one time axis, queued and running per stage,
    its failure marked, and a stage that ends before it starts shown as impossible."""
    from playwright.sync_api import sync_playwright

    submitter = prepare(settings)
    otter, otter_key = next(iter(TENANT_KEYS.items()))
    (name, data), (other_name, other_data) = corpus.mixed(2, seed=51)
    document_id = submitter.submit(data, filename=name, tenant=otter).document_id
    submitter.submit(other_data, filename=other_name, tenant="tenant-lynx-9c4")
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    at = {s: t0 + timedelta(seconds=s) for s in (2, 5, 9, 8, 30, 31)}
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE documents SET status = 'failed', uploaded_at = :t0,"
                " parsing_started_at = :a2, parsed_at = :a5, chunking_started_at = :a9,"
                " chunked_at = :a8, embedding_started_at = :a30, completed_at = NULL,"
                " failed_at = :a31, failed_stage = 'embed', error_class = 'EmbedError'"
                " WHERE id = :id"
            ),
            {"t0": t0, "id": document_id, **{f"a{s}": v for s, v in at.items()}},
        )
    engine.dispose()
    url = f"{api}/v1/dashboard/documents/{document_id}/timeline"
    tl = httpx.get(url, headers={"Authorization": f"Bearer {otter_key}"}, timeout=30).json()
    expected = [
        ("parse", "queued", 0.0, 2.0),
        ("parse", "running", 2.0, 5.0),
        ("chunk", "queued", 5.0, 9.0),
        ("chunk", "running", 9.0, 8.0),  # chunked before it started: impossible
        ("embed", "queued", 8.0, 30.0),  # a long wait
        ("embed", "running", 30.0, 31.0),  # failed
    ]
    assert [(s["stage"], s["kind"], s["start_s"], s["end_s"]) for s in tl["segments"]] == expected
    assert [s["impossible"] for s in tl["segments"]] == [False, False, False, True, False, False]
    assert [s["failed"] for s in tl["segments"]] == [False] * 5 + [True]
    assert tl["failed"]["stage"] == "embed" and tl["failed"]["at_s"] == 31.0
    operator = httpx.get(url, headers=OPERATOR, timeout=30)
    assert operator.status_code == 200 and operator.json()["segments"] == tl["segments"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = _browser_page(browser, otter_key)
            _wait_loaded(page, api)
            page.wait_for_selector("#newest button", timeout=30_000)
            page.click("#newest button")  # the tenant's one document
            page.wait_for_selector("#timeline rect.segment", timeout=30_000)
            drawn = page.eval_on_selector_all(
                "#timeline rect.segment",
                "rs => rs.map(r => ({...r.dataset, x: +r.getAttribute('x'),"
                " width: +r.getAttribute('width'), cls: r.getAttribute('class')}))",
            )
            axis = page.eval_on_selector("#timeline svg", "s => ({...s.dataset})")
            x0, px_per_s, gutter = (float(axis[k]) for k in ("x0S", "pxPerS", "gutter"))
            assert len(drawn) == len(tl["segments"])
            for rect, segment in zip(drawn, tl["segments"], strict=True):
                assert (rect["stage"], rect["kind"]) == (segment["stage"], segment["kind"])
                assert float(rect["startS"]) == segment["start_s"]
                assert float(rect["endS"]) == segment["end_s"]
                start, end = sorted((segment["start_s"], segment["end_s"]))
                # where it sits on the one time axis is what the numbers say
                assert rect["x"] == pytest.approx(gutter + (start - x0) * px_per_s, abs=0.01)
                assert rect["width"] == pytest.approx((end - start) * px_per_s, abs=0.01)
                assert ("seg-impossible" in rect["cls"]) == segment["impossible"]
                assert ("seg-failed" in rect["cls"]) == segment["failed"]
            mark = page.eval_on_selector("#timeline line.failed-mark", "l => +l.dataset.atS")
            assert mark == 31.0
            assert "failed in embed" in page.inner_text("#timeline")
            shots = Path(os.environ.get("RAGSTREAM_SCREENSHOT_DIR", tmp_path))
            page.locator("#timeline-box").screenshot(path=str(shots / "timeline.png"))
            # another tenant's id typed in: not found, nothing drawn of it
            page.fill("#timeline-id", str(uuid.uuid4()))
            page.click("#timeline-form button")
            page.wait_for_function(
                "document.getElementById('timeline-error').textContent.includes('no such')"
            )
        finally:
            browser.close()
