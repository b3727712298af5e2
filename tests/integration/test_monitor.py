"""The monitor as a real process, on the real broker and database, beside real workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr
from sqlalchemy import Engine, text

from ragstream import topology
from ragstream.db.engine import make_engine
from ragstream.kafka import consumer_config
from ragstream.monitor import store
from ragstream.monitor.alerts import alert_codec
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import DocumentUploaded, PipelineAlert, utc_now
from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_alert_delivery import Receiver
from tests.pipeline import Workers, prepare, settings_env, submit_all, wait_terminal

pytestmark = pytest.mark.integration


class MonitorProcess:
    def __init__(self, settings: Settings, log_file: Path) -> None:
        self.log_file = log_file
        with open(log_file, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ragstream.cli", "monitor"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **settings_env(settings)},
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log(self) -> str:
        return self.log_file.read_text()[-4000:]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    """A real HTTP receiver on the loopback: the monitor delivers its alerts to it."""
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def monitored(
    settings: Settings, tmp_path: Path, hook: Receiver
) -> Iterator[tuple[Settings, Workers, Engine]]:
    mine = settings.model_copy(
        update={
            "monitor_metrics_port": 0,
            "monitor_interval_s": 2.0,
            "alert_webhook_url": SecretStr(hook.url),
        }
    )
    prepare(mine)
    workers = Workers(mine, tmp_path / "logs")
    monitor = MonitorProcess(mine, tmp_path / "monitor.log")
    engine = make_engine(mine)
    try:
        _poll(lambda: _stage_count(engine) == 4, 120, "monitor never looked at the stages", monitor)
        yield mine, workers, engine
    finally:
        for procs in workers.procs.values():
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
        workers.stop_all()
        monitor.stop()
        engine.dispose()


def _stage_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM monitor_stages")).scalar_one())


def _poll(check: Any, timeout_s: float, why: str, monitor: MonitorProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{why} within {timeout_s}s\n{monitor.log() if monitor else ''}")


def _open_alerts(engine: Engine, kind: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [a for a in store.list_alerts(conn) if a["kind"] == kind and a["state"] == "open"]


def _alert_events(settings: Settings, expect: set[str], timeout_s: float) -> list[PipelineAlert]:
    codec = alert_codec(settings)
    consumer = Consumer(consumer_config(settings, f"alerts-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic(topology.ALERTS)])
    found: list[PipelineAlert] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not expect <= {e.kind for e in found}:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found.append(codec.decode(msg.value(), PipelineAlert))
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["sigstop", "sigkill"])
def test_stopped_embed_workers_raise_stage_stalled_within_a_minute(
    monitored: tuple[Settings, Workers, Engine], sig: signal.Signals, hook: Receiver
) -> None:
    settings, workers, engine = monitored
    workers.start_all()
    submitter = prepare(settings)
    warm = submit_all(submitter, corpus.mixed(3, seed=21))
    wait_terminal(settings, warm, timeout_s=180, workers=workers)

    for proc in workers.alive("embed"):
        os.kill(proc.pid, sig)
    stopped = time.monotonic()
    waiting = submit_all(submitter, corpus.mixed(6, seed=22))

    alerts = _poll(
        lambda: [a for a in _open_alerts(engine, "stage_stalled") if a["stage"] == "embed"],
        90,
        "no stage_stalled alert for embed",
    )
    latency = time.monotonic() - stopped
    print(f"monitor: embed {sig.name} -> stage_stalled alert in {latency:.1f}s")
    assert latency < 60
    # ... and a person is told: the alert reaches the webhook (Alertmanager JSON).
    delivered = _poll(
        lambda: [
            body
            for body in hook.bodies
            if body["commonLabels"].get("alertname") == "RagstreamStageStalled"
            and body["commonLabels"].get("stage") == "embed"
            and body["status"] == "firing"
        ],
        30,
        "no stage_stalled alert delivered to the webhook",
    )
    print(
        f"webhook: {delivered[0]['commonLabels']['alertname']} (stage embed) received "
        f"{time.monotonic() - stopped:.1f}s after the {sig.name}"
    )
    assert "waiting" in alerts[0]["message"]
    # The job status view tells the waiting documents are stalled, not just queued.
    with engine.connect() as conn:
        status = conn.execute(
            text("SELECT status FROM documents WHERE id = :id"), {"id": waiting[0]}
        ).scalar_one()
        wait = store.document_wait(conn, waiting[0], status)
    assert wait is not None and wait.state == "stalled", wait
    assert {"stage_stalled"} <= {e.kind for e in _alert_events(settings, {"stage_stalled"}, 30)}

    if sig == signal.SIGSTOP:
        for proc in workers.alive("embed"):
            os.kill(proc.pid, signal.SIGCONT)
    else:
        workers.start("embed")
    wait_terminal(settings, waiting, timeout_s=180, workers=workers)
    _poll(
        lambda: not [a for a in _open_alerts(engine, "stage_stalled") if a["stage"] == "embed"],
        60,
        "stage_stalled alert did not resolve after embed came back",
    )


def test_forged_future_timestamp_raises_impossible_timestamp(
    monitored: tuple[Settings, Workers, Engine],
) -> None:
    settings, _, engine = monitored
    document_id = str(uuid.uuid4())
    forged = DocumentUploaded(
        document_id=document_id,
        job_id=str(uuid.uuid4()),
        tenant="forger",
        blob_sha256="0" * 64,
        blob_uri="blob://" + "0" * 64,
        size_bytes=10,
        uploaded_at=utc_now() + timedelta(days=3),
    )
    producer = EventProducer(settings)
    sent = time.monotonic()
    producer.send(
        settings.topic(topology.UPLOADED), document_id, make_codec(settings).encode(forged)
    )
    producer.wait()
    alerts = _poll(
        lambda: [
            a
            for a in _open_alerts(engine, "impossible_timestamp")
            if a["document_id"] == document_id
        ],
        60,
        "no impossible_timestamp alert",
    )
    latency = time.monotonic() - sent
    print(f"monitor: forged future uploaded_at -> impossible_timestamp alert in {latency:.1f}s")
    assert "in the future" in alerts[0]["message"]
    assert alerts[0]["stage"] == "parse"
    events = _alert_events(settings, {"impossible_timestamp"}, 30)
    assert any(e.document_id == document_id and e.state == "open" for e in events)
