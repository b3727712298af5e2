"""After a run, replay every stage from the earliest offset: nothing changes, nothing is added."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragstream.cli import app
from ragstream.kafka import admin_client
from ragstream.ops import groups, replay
from ragstream.settings import Settings
from ragstream.topology import STAGE_NAMES
from tests import corpus
from tests.chaos.harness import (
    LONG,
    TEST_TIMEOUT_S,
    Workload,
    chaos_settings,
    content_checksum,
    crew_of,
    finish,
    poll,
    settle,
)
from tests.chaos.hostile import Hostile, truncated_pdf
from tests.pipeline import prepare, settings_env, table_counts

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]


def test_replay_of_every_stage_from_earliest_changes_no_row(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    documents = 30 if LONG else 6
    s = chaos_settings(settings)
    bad = [Hostile("rp-truncated.pdf", truncated_pdf(81), "failed", "CorruptDocument")]
    workload = Workload(s, corpus.mixed(documents, seed=81), bad)
    submitter = prepare(s)
    with crew_of(s, tmp_path / "first", seed=81) as crew:
        crew.start()
        workload.submit(submitter)
        settle(s, workload, crew, healed_at=time.monotonic())
    counts, checksum = table_counts(s), content_checksum(s)

    admin = admin_client(s)
    group_ids = [replay.stage_group(s, stage)[0] for stage in STAGE_NAMES]
    poll(
        lambda: not any(groups.members(admin, g) for g in group_ids),
        timeout_s=60,
        what="the stopped workers to leave their groups",
    )
    cli = CliRunner()
    env = settings_env(s)
    reprocess = 0
    for stage in STAGE_NAMES:
        result = cli.invoke(app, ["replay", "--stage", stage, "--from", "earliest"], env=env)
        assert result.exit_code == 0, result.output
        committed = groups.group_state(
            admin,
            replay.stage_group(s, stage)[0],
            s.topic(replay.topology.STAGES[stage].input_topic),
        )
        assert all(p.position == p.low for p in committed)
        reprocess += sum(p.lag for p in committed)
    healed = time.monotonic()

    with crew_of(s, tmp_path / "replay", seed=82) as crew:
        crew.start()
        outcome = finish(
            request,
            s,
            workload,
            crew,
            name="replay-all-stages",
            faults=len(STAGE_NAMES),
            healed_at=healed,
            extra=lambda: f"replayed_messages={reprocess}",
        )
    assert reprocess > 0
    assert table_counts(s) == counts
    assert content_checksum(s) == checksum
    assert outcome.dlq_records >= 2 * outcome.dlq_distinct  # each bad one failed again
