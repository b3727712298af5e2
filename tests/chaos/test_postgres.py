"""Stop PostgreSQL mid-run (and, in the long form, SIGKILL it), then start it again."""

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


def test_postgres_stopped_and_restarted_mid_run(
    settings: Settings, devstack: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents = 30 if LONG else 10
    outages = (
        (("immediate", "parsed", 2), ("kill", "chunked", 12))
        if LONG
        else (("immediate", "parsed", 2),)
    )
    outage_s = 10.0 if LONG else 4.0
    s = chaos_settings(settings)
    bad = [Hostile("p-truncated.pdf", truncated_pdf(41), "failed", "CorruptDocument")]
    workload = Workload(s, corpus.mixed(documents, seed=41), bad)
    submitter = prepare(s)
    workload.submit(submitter)  # uploads need the database: all of them before the outage
    with crew_of(s, tmp_path / "logs", seed=41) as crew:
        crew.start()
        healed = time.monotonic()
        try:
            for how, status, reached in outages:
                wait_for_progress(s, workload, status, reached)
                if how == "kill":
                    devstack.postgres.kill()
                else:
                    devstack.postgres.stop(mode=how)
                time.sleep(outage_s)
                devstack.postgres.start()
                healed = time.monotonic()
        finally:
            devstack.postgres.start()
        finish(
            request,
            s,
            workload,
            crew,
            name="postgres-restart",
            faults=len(outages),
            healed_at=healed,
        )
