"""The monitor's tables pruned by age (open alerts kept), and ``ragstream alerts`` showing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import text

from ragstream.db.engine import make_engine
from ragstream.monitor import store
from ragstream.monitor.logic import Alert, AlertKind
from ragstream.settings import Settings
from tests.pipeline import settings_env

pytestmark = pytest.mark.integration

DAY = 24 * 3600.0


def _age(conn: object, alert: Alert, *, seen_days: float, resolved_days: float | None) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "UPDATE monitor_alerts SET first_seen_at = now() - make_interval(secs => :seen), "
            "last_seen_at = now() - make_interval(secs => :seen), resolved_at = CASE WHEN "
            "CAST(:resolved AS float8) IS NULL THEN NULL "
            "ELSE now() - make_interval(secs => :resolved) END WHERE id = :id"
        ),
        {
            "seen": seen_days * DAY,
            "resolved": None if resolved_days is None else resolved_days * DAY,
            "id": alert.id,
        },
    )


def test_prune_drops_old_resolved_alerts_and_rows_keeps_open_ones_and_the_cli_shows_them(
    settings: Settings,
) -> None:
    engine = make_engine(settings)
    old = Alert(
        AlertKind.SLA_EXCEEDED, "late long ago", stage="parse", document_id=str(uuid.uuid4())
    )
    still = Alert(AlertKind.STAGE_STALLED, "stage stalled: embed: no worker", stage="embed")
    recent = Alert(AlertKind.DLQ_MESSAGE, "chunk dead-lettered", stage="chunk")
    stale, fresh = uuid.uuid4(), uuid.uuid4()
    try:
        with engine.begin() as conn:
            store.open_alerts(conn, [old, still, recent])
            _age(conn, old, seen_days=9, resolved_days=8)
            _age(conn, still, seen_days=30, resolved_days=None)  # open for a month: kept
            _age(conn, recent, seen_days=0.1, resolved_days=0.05)
            store.save_waiting(
                conn,
                [
                    {"document_id": d, "stage": "embed", "partition": 0, "offset": 1, "since": now}
                    for d, now in ((stale, "2020-01-01T00:00:00Z"), (fresh, "2020-01-01T00:00:00Z"))
                ],
            )
            conn.execute(
                text(
                    "UPDATE monitor_waiting SET updated_at = now() - interval '8 days' "
                    "WHERE document_id = :d"
                ),
                {"d": stale},
            )
        with engine.begin() as conn:
            assert store.prune(conn, settings.monitor_retention_s) == {"alerts": 1, "waiting": 1}
        with engine.connect() as conn:
            ids = {str(r) for r in conn.execute(text("SELECT id FROM monitor_alerts")).scalars()}
            kept = set(conn.execute(text("SELECT document_id FROM monitor_waiting")).scalars())
        assert ids == {str(still.id), str(recent.id)}
        assert kept == {fresh}
    finally:
        engine.dispose()

    env = {**os.environ, **settings_env(settings), "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "ragstream.cli", "alerts", "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    found = {a["id"]: a for a in json.loads(shown.stdout)["alerts"]}
    assert set(found) == {str(still.id), str(recent.id)}
    assert found[str(still.id)]["state"] == "open" and found[str(recent.id)]["state"] == "resolved"
    assert found[str(still.id)]["stage"] == "embed"
    table = subprocess.run(
        [sys.executable, "-m", "ragstream.cli", "alerts", "--hours", "0.5"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "no worker" in table.stdout and "dead-lettered" not in table.stdout
    assert "1 open, 0 resolved in the last 0.5h" in " ".join(table.stdout.split())
