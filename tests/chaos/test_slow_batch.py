"""A batch slower than max.poll.interval.ms: the embedder stalls; the worker must not livelock."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ragstream.settings import Settings
from tests import corpus
from tests.chaos.embedding_server import EmbeddingServer
from tests.chaos.harness import (
    LONG,
    TEST_TIMEOUT_S,
    Workload,
    chaos_settings,
    crew_of,
    finish,
    poll,
)
from tests.chaos.hostile import Hostile, truncated_pdf
from tests.pipeline import prepare

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]

MAX_POLL_INTERVAL_S = 10  # the settings' minimum
SESSION_TIMEOUT_S = 6  # librdkafka wants it at most max.poll.interval.ms; the broker's minimum


def _events(log_dir: Path, stage: str, event: str) -> int:
    count = 0
    for path in log_dir.glob(f"{stage}-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                count += 1
    return count


def test_batch_slower_than_max_poll_interval_completes_within_three_attempts(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents, slow = (20, 3) if LONG else (4, 1)
    delay_s = MAX_POLL_INTERVAL_S + 2
    with EmbeddingServer(delay_s=delay_s, slow_requests=slow) as server:
        s = chaos_settings(
            settings,
            embedder="openai",
            openai_base_url=server.base_url,
            openai_model="slow-test",
            openai_timeout_s=delay_s * 3,
            max_poll_interval_s=MAX_POLL_INTERVAL_S,
            session_timeout_s=SESSION_TIMEOUT_S,
        )
        bad = [Hostile("s-truncated.pdf", truncated_pdf(71), "failed", "CorruptDocument")]
        workload = Workload(s, corpus.mixed(documents, seed=71), bad)
        submitter = prepare(s)
        logs = tmp_path / "logs"
        with crew_of(s, logs, seed=71) as crew:
            crew.start()
            workload.submit(submitter)
            poll(lambda: server.slow_served >= slow, timeout_s=120, what="the slow requests")
            outcome = finish(
                request,
                s,
                workload,
                crew,
                name="slow-batch",
                faults=server.slow_served,
                healed_at=time.monotonic(),
                extra=lambda: f"most_requests_per_chunk={max(server.texts.values())}",
            )
            # Counted before the crew stops: a clean stop revokes too.
            lost_partitions = _events(logs, "embed", "partitions_lost")
            revoked = _events(logs, "embed", "revoked")
        attempts = max(server.texts.values())
    assert server.slow_served == slow
    assert attempts <= 3, f"a chunk was sent {attempts} times: the batch was retried in a loop"
    assert lost_partitions == 0 and revoked == 0, "the embed worker was thrown out of its group"
    assert outcome.chunks == outcome.expected_chunks
