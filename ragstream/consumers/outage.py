"""The ``dependency_down`` alert of one stage worker.

While a dependency (the database, the broker, a topic, the embedder) does not
answer, the runner waits instead of failing documents; this makes that wait
visible. The alert is opened once, with the error, in the alerts table that
the dashboard, ``GET /v1/alerts`` and ``ragstream alerts`` read, and closed
when a batch goes through again. When the database itself is what is down,
the alert is written as soon as it answers again; until then the
``ragstream_dependency_down`` gauge and the ``dependency_down`` log line say it.
"""

from __future__ import annotations

import structlog
from sqlalchemy import Engine

from ragstream.consumers import metrics
from ragstream.monitor import store
from ragstream.monitor.logic import Alert, AlertKind

log = structlog.get_logger(__name__)


class OutageAlert:
    def __init__(self, stage: str, engine: Engine) -> None:
        self.stage = stage
        self.engine = engine
        self.down_since: float | None = None
        self.recorded = False

    def _alert(self, error: str = "") -> Alert:
        return Alert(
            AlertKind.DEPENDENCY_DOWN,
            f"stage {self.stage} waits for a dependency: {error[:300]}",
            stage=self.stage,
        )

    def down(self, error: str, now: float) -> None:
        metrics.DEPENDENCY_DOWN.labels(self.stage).set(1)
        if self.down_since is None:
            self.down_since = now
        if self.recorded:
            return
        try:
            with self.engine.begin() as conn:
                store.open_alerts(conn, [self._alert(error)])
            self.recorded = True
            log.warning("alert_opened", kind=AlertKind.DEPENDENCY_DOWN.value, stage=self.stage)
        except Exception as exc:  # the database may be the dependency that is down
            log.info("dependency_down_alert_unrecorded", stage=self.stage, error=str(exc)[:200])

    def up(self) -> None:
        if self.down_since is None:
            return
        metrics.DEPENDENCY_DOWN.labels(self.stage).set(0)
        if self.recorded:
            try:
                with self.engine.begin() as conn:
                    store.resolve_alert(conn, self._alert().id)
            except Exception as exc:  # closed on the next batch that goes through
                log.info("dependency_up_alert_unresolved", stage=self.stage, error=str(exc)[:200])
                return
            log.info("alert_resolved", kind=AlertKind.DEPENDENCY_DOWN.value, stage=self.stage)
        self.down_since = None
        self.recorded = False
