"""Poison and hostile input interleaved with good documents: each bad one fails alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ragstream.settings import Settings
from tests import corpus
from tests.chaos.harness import LONG, TEST_TIMEOUT_S, Workload, chaos_settings, crew_of, finish
from tests.chaos.hostile import hostile_documents
from tests.pipeline import prepare

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]


def test_poison_and_hostile_documents_fail_alone_and_good_ones_complete(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents = 30 if LONG else 4
    # Large batches: the 10 MB line alone makes about 6,000 chunks.
    s = chaos_settings(settings, max_batch_size=256)
    hostile = hostile_documents(seed=61)
    workload = Workload(s, corpus.mixed(documents, seed=61), hostile)
    workload.interleave(61)
    submitter = prepare(s)
    with crew_of(s, tmp_path / "logs", seed=61) as crew:
        crew.start()
        half = len(workload.items) // 2
        workload.submit(submitter, stop=half)
        workload.inject_poison()  # between good documents, on every stage's topic
        workload.submit(submitter, start=half)
        healed = time.monotonic()
        faults = len(workload.poison) + len(hostile)
        outcome = finish(request, s, workload, crew, name="poison", faults=faults, healed_at=healed)
    assert outcome.dlq_distinct == len(workload.poison) + workload.bad
    assert workload.refused == workload.refusals
