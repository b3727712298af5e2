"""Whether a stage's dependencies answer: what tells a dependency's outage from a bad message.

While the database, the broker (every topic the stage reads or writes, each
partition with a leader) or the stage's embedder does not answer, a failing batch
is the dependency's fault: the runner keeps retrying and fails nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import Engine, text

from ragstream.consumers.outage import OutageAlert
from ragstream.embedding.base import Embedder
from ragstream.errors import DependencyUnavailable, as_permanent

log = structlog.get_logger(__name__)

EMBEDDER_PROBE = "ragstream dependency probe"
"""What a stage's embedder is asked to embed to learn whether it answers."""


class DependencyProbe:
    def __init__(
        self,
        stage: str,
        engine: Engine,
        topics: Sequence[str],
        list_topics: Callable[[str], Any],
        embedder: Callable[[], Embedder | None],
        outage: OutageAlert,
    ) -> None:
        self.stage = stage
        self.engine = engine
        self.topics = list(topics)
        self.list_topics = list_topics  # the consumer's, which may be rebuilt
        self.embedder = embedder
        self.outage = outage

    def __call__(self) -> bool:
        """Whether everything answers right now; a failed look raises the outage alert."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            for topic in self.topics:
                self._check_topic(topic)
            embedder = self.embedder()
            if embedder is not None:
                embedder.embed([EMBEDDER_PROBE])
        except Exception as exc:  # any failure means: not the message's fault, keep retrying
            if as_permanent(exc) is not None:  # the probe itself refused: that is an answer
                return True
            log.info("dependency_down", stage=self.stage, error=str(exc)[:300])
            self.outage.down(str(exc), time.monotonic())
            return False
        return True

    def _check_topic(self, topic: str) -> None:
        """Raise unless ``topic`` exists and every partition of it has a leader."""
        found = self.list_topics(topic).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise DependencyUnavailable(f"topic {topic} unavailable: {found and found.error}")
        leaderless = [p.id for p in found.partitions.values() if p.error or p.leader < 0]
        if leaderless:
            raise DependencyUnavailable(f"topic {topic}: no leader for partitions {leaderless}")
