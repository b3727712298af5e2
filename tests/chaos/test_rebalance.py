"""Grow stages from 1 to 3 consumers and shrink them back, mid-run."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ragstream.settings import Settings
from ragstream.topology import STAGE_NAMES
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


def test_rebalance_grow_to_three_and_shrink_back(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents, rounds = (40, 2) if LONG else (10, 1)
    stages = STAGE_NAMES if LONG else ("chunk", "embed")
    s = chaos_settings(settings)
    bad = [Hostile("r-truncated.pdf", truncated_pdf(51), "failed", "CorruptDocument")]
    workload = Workload(s, corpus.mixed(documents, seed=51), bad)
    submitter = prepare(s)
    rng = random.Random(51)
    changes = 0
    with crew_of(s, tmp_path / "logs", seed=51) as crew:
        crew.start()
        submitting = workload.submit_in_background(submitter, pace_s=0.5)
        wait_for_progress(s, workload, "parsed", 1)
        for _ in range(rounds):
            for stage in stages:
                changes += crew.scale(stage, 3)
            time.sleep(rng.uniform(3.0, 5.0))
            for stage in stages:
                changes += crew.scale(stage, 1)
        healed = time.monotonic()
        submitting.result(timeout=120)
        finish(request, s, workload, crew, name="rebalance", faults=changes, healed_at=healed)
    assert changes == 4 * len(stages) * rounds
