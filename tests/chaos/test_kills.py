"""SIGKILL workers of every stage, repeatedly and in bursts, while documents flow."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ragstream.db.engine import make_engine
from ragstream.progress import documents_progress
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
from tests.chaos.hostile import Hostile, truncated_pdf, zip_bomb_docx
from tests.pipeline import prepare

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]


def kill_plan(rng: random.Random, kills: int) -> list[float]:
    """The pause before each kill: bursts of 2 to 4 kills 0.1 to 1 s apart, 1.5 to 3 s between."""
    plan: list[float] = []
    burst = 0
    for _ in range(kills):
        if burst == 0:
            pause, burst = rng.uniform(1.5, 3.0), rng.randint(2, 4)
        else:
            pause = rng.uniform(0.1, 1.0)
        plan.append(pause)
        burst -= 1
    return plan


_WAITING_FOR = {
    "parse": ("uploaded", "parsing"),
    "chunk": ("parsed", "chunking"),
    "embed": ("chunked", "chunking", "embedding"),
    "finalize": ("embedding",),
}


def victim(rng: random.Random, settings: Settings, workload: Workload, killed: list[str]) -> str:
    """A stage with work waiting (so the kill lands mid-batch), one not killed yet first."""
    engine = make_engine(settings)
    try:
        statuses = {p.status for p in documents_progress(engine, workload.submitted).values()}
    finally:
        engine.dispose()
    busy = [stage for stage, waiting in _WAITING_FOR.items() if statuses & set(waiting)]
    fresh = [stage for stage in STAGE_NAMES if stage not in killed]
    pool = [stage for stage in busy if stage in fresh] or fresh or busy or list(STAGE_NAMES)
    return rng.choice(pool)


def test_sigkill_random_workers_of_every_stage_in_bursts(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents, kills = (40, 20) if LONG else (10, 6)
    s = chaos_settings(settings)
    bad = [
        Hostile("k-truncated.pdf", truncated_pdf(21), "failed", "CorruptDocument"),
        Hostile("k-bomb.docx", zip_bomb_docx(22), "failed", "CorruptDocument"),
    ]
    workload = Workload(s, corpus.mixed(documents, seed=21), bad)
    workload.interleave(21)
    submitter = prepare(s)
    rng = random.Random(21)
    with crew_of(s, tmp_path / "logs", seed=21) as crew:
        crew.start()
        submitting = workload.submit_in_background(submitter, pace_s=0.5)
        wait_for_progress(s, workload, "chunked", 1)
        killed: list[str] = []
        for pause in kill_plan(rng, kills):
            time.sleep(pause)
            stage = victim(rng, s, workload, killed)
            if crew.kill(stage):
                killed.append(stage)
        healed = time.monotonic()
        submitting.result(timeout=120)
        outcome = finish(
            request, s, workload, crew, name="sigkill", faults=len(killed), healed_at=healed
        )
    assert len(killed) == kills and set(killed) == set(STAGE_NAMES), killed
    assert crew.restarts >= kills
    assert outcome.faults == kills
