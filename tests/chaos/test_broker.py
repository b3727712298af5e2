"""Stop (and, in the long form, SIGKILL) the Kafka broker mid-run, then start it again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ragstream.settings import Settings
from tests import corpus
from tests.chaos.harness import (
    LONG,
    TEST_TIMEOUT_S,
    Workload,
    chaos_settings,
    crew_of,
    finish,
    wait_for_progress,
)
from tests.chaos.hostile import Hostile, truncated_pdf
from tests.pipeline import prepare

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]


def test_broker_stopped_and_restarted_mid_run(
    settings: Settings, devstack: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents, outages = (30, ("stop", "kill")) if LONG else (8, ("stop",))
    outage_s = 10.0 if LONG else 4.0
    s = chaos_settings(settings)
    bad = [Hostile("b-truncated.pdf", truncated_pdf(31), "failed", "CorruptDocument")]
    workload = Workload(s, corpus.mixed(documents, seed=31), bad)
    submitter = prepare(s)
    per_round = len(workload.items) // (len(outages) + 1)
    with crew_of(s, tmp_path / "logs", seed=31) as crew:
        crew.start()
        workload.submit(submitter, stop=per_round)
        healed = time.monotonic()
        try:
            for i, how in enumerate(outages, start=1):
                # Chunks waiting to be embedded: the broker goes away under a busy embed batch.
                wait_for_progress(s, workload, "chunked", i)
                getattr(devstack.kafka, how)()
                # Uploads during the outage: each is answered only once the broker has it.
                stop = None if i == len(outages) else per_round * (i + 1)
                late = workload.submit_in_background(submitter, start=per_round * i, stop=stop)
                time.sleep(outage_s)
                devstack.kafka.start()
                healed = time.monotonic()
                late.result(timeout=180)
        finally:
            devstack.kafka.start()
        finish(
            request, s, workload, crew, name="broker-restart", faults=len(outages), healed_at=healed
        )
