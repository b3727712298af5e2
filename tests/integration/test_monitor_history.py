"""The monitor's stage history (migration 0018): one point per stage each look, the last hour
as chart series for the dashboard, pruned with the monitor's other tables (issue 20, item 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.db.engine import make_engine
from ragstream.monitor import store
from ragstream.monitor.app import Monitor
from ragstream.monitor.logic import StageHealth, StageState
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, submit_all

pytestmark = pytest.mark.integration


def _row(stage: str, processed: float, lag: int) -> store.StageRow:
    now = datetime.now(UTC)
    health = StageHealth(stage, StageState.IDLE, "test", lag, 1, processed, now)
    return store.StageRow(health, processed / 2, 0, {}, {})


def test_history_is_charted_for_the_last_hour_aligned_and_pruned_by_retention(
    settings: Settings,
) -> None:
    engine = make_engine(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with engine.begin() as conn:
            store.record_history(conn, [_row("parse", 1.0, 10), _row("chunk", 2.0, 20)], now)
            # a look where only parse answered, ten minutes earlier
            store.record_history(conn, [_row("parse", 0.5, 5)], now - timedelta(minutes=10))
            # written again at the same time: the second write wins
            store.record_history(conn, [_row("parse", 3.0, 30)], now)
            store.record_history(conn, [_row("parse", 9.0, 90)], now - timedelta(hours=3))
            series = store.history_series(conn, topology.STAGE_NAMES)
        assert series["at"] == [(now - timedelta(minutes=10)).timestamp(), now.timestamp()]
        assert series["throughput"]["parse"] == [0.5, 3.0]
        assert series["lag"]["parse"] == [5, 30]
        assert series["throughput"]["chunk"] == [None, 2.0]
        assert series["lag"]["embed"] == [None, None]
        assert list(series["throughput"]) == list(topology.STAGE_NAMES)

        with engine.begin() as conn:
            assert store.prune(conn, 2 * 3600) == {"alerts": 0, "waiting": 0, "history": 1}
            assert store.prune(conn, 2 * 3600) == {"alerts": 0, "waiting": 0}
            left = conn.execute(select(func.count()).select_from(store.history)).scalar_one()
        assert left == 3
    finally:
        engine.dispose()


def test_each_look_of_the_monitor_writes_one_history_point_per_stage(settings: Settings) -> None:
    submitter = prepare(settings)
    submit_all(submitter, corpus.mixed(2, seed=61))
    monitor = Monitor(settings)
    first = datetime.now(UTC)
    monitor._stage_healths(first, {"parse": 4.0})
    monitor._stage_healths(first + timedelta(seconds=5), {"parse": 6.0})
    with monitor.engine.connect() as conn:
        rows = conn.execute(
            select(store.history).order_by(store.history.c.at, store.history.c.stage)
        ).all()
        series = store.history_series(conn, topology.STAGE_NAMES)
    monitor.engine.dispose()
    assert len(rows) == 2 * len(topology.STAGE_NAMES)
    assert {r.stage for r in rows} == set(topology.STAGE_NAMES)
    assert len(series["at"]) == 2
    assert series["lag"]["parse"] == [2, 2]  # two uploads, no parse worker
    parse = [r for r in rows if r.stage == "parse"]
    assert [r.arrivals_per_min for r in parse] == [4.0, 6.0]
