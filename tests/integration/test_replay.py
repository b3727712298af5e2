"""``ragstream replay`` on real topics: dry runs, resets by offset and by time, and refusals."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from ragstream.cli import app
from ragstream.consumers.worker import build_runner
from ragstream.kafka import admin_client
from ragstream.ops import groups, replay
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, settings_env, submit_all, table_counts

pytestmark = pytest.mark.integration


def _committed(settings: Settings, stage: str) -> dict[int, int | None]:
    group, topic = replay.stage_group(settings, stage)
    states = groups.group_state(admin_client(settings), group, topic)
    return {p.partition: p.committed for p in states}


def _positions(settings: Settings, stage: str) -> dict[int, int]:
    """Where the group resumes on each partition (its first offset when it has none)."""
    group, topic = replay.stage_group(settings, stage)
    states = groups.group_state(admin_client(settings), group, topic)
    return {p.partition: p.position for p in states}


def _parse(settings: Settings, expect: int) -> int:
    """Run the parse stage until it has handled ``expect`` messages and gone idle."""
    stats = build_runner(settings, "parse").run(max_messages=expect, idle_timeout_s=15)
    return stats.processed + stats.failed


def test_dry_run_changes_nothing_and_replay_from_earliest_rereads_everything(
    settings: Settings,
) -> None:
    submitter = prepare(settings)
    submit_all(submitter, corpus.mixed(6, seed=91))
    assert _parse(settings, 6) == 6
    before, counts = _committed(settings, "parse"), table_counts(settings)
    assert sum(o or 0 for o in before.values()) == 6

    cli, env = CliRunner(), settings_env(settings)
    args = ["replay", "--stage", "parse", "--from", "earliest"]
    dry = cli.invoke(app, [*args, "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.stdout)
    assert shown["group"] == settings.topic_prefix + "ragstream-parse"
    assert {p["partition"]: p["current"] for p in shown["partitions"]} == before
    assert all(p["new"] == 0 for p in shown["partitions"])
    assert sum(p["reprocess"] for p in shown["partitions"]) == 6
    assert _committed(settings, "parse") == before  # a dry run moves nothing

    done = cli.invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    assert set(_committed(settings, "parse").values()) == {0}
    assert _parse(settings, 6) == 6  # everything again
    assert _positions(settings, "parse") == {p: o or 0 for p, o in before.items()}
    assert table_counts(settings) == counts  # upserts overwrite: no row added


def test_replay_refuses_while_the_group_has_members_and_names_them(settings: Settings) -> None:
    submitter = prepare(settings)
    submit_all(submitter, corpus.mixed(2, seed=92))
    runner = build_runner(settings, "parse")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not runner.ready and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runner.ready
        while runner.stats.processed < 2 and time.monotonic() < deadline + 60:
            time.sleep(0.2)  # both documents done, so the offsets to keep are known
        assert runner.stats.processed == 2
        plan = replay.plan(settings, "parse", replay.parse_start("earliest"))
        assert [m.client_id for m in plan.members] == ["ragstream-parse"]
        assert plan.members[0].partitions == (0, 1, 2)
        with pytest.raises(replay.GroupHasMembers) as refused:
            replay.apply(settings, plan)
        message = str(refused.value)
        assert (
            "client ragstream-parse on " in message and plan.members[0].host.lstrip("/") in message
        )
        assert "ragstream down" in message
        assert "kubectl scale deployment/ragstream-parse --replicas=0" in message

        env = settings_env(settings)
        args = ["replay", "--stage", "parse", "--from", "earliest"]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 1 and "active member" in result.output
        dry = CliRunner().invoke(app, [*args, "--dry-run"], env=env)
        assert dry.exit_code == 0 and "not possible now" in dry.output
    finally:
        runner.stop()
        thread.join(timeout=60)
    assert sum(_positions(settings, "parse").values()) == 2  # left as it was


def test_replay_from_a_point_in_time_and_from_explicit_offsets(settings: Settings) -> None:
    submitter = prepare(settings)
    first, second = corpus.mixed(8, seed=93)[:4], corpus.mixed(8, seed=93)[4:]
    submit_all(submitter, first)
    assert _parse(settings, 4) == 4
    after_first = _positions(settings, "parse")
    time.sleep(1.0)
    between = datetime.now(UTC)
    time.sleep(1.0)
    submit_all(submitter, second)
    assert _parse(settings, 4) == 4
    end = _positions(settings, "parse")

    plan = replay.plan(settings, "parse", replay.parse_start(between.isoformat()))
    assert {p.partition: p.new for p in plan.partitions} == after_first
    assert plan.reprocess == 4
    replay.apply(settings, plan)
    assert _parse(settings, 4) == 4  # exactly the second wave again
    assert _positions(settings, "parse") == end

    naive = replay.parse_start(between.replace(tzinfo=None).isoformat())
    assert naive.at == between  # a time without a zone is UTC

    target = {p: max(o - 1, 0) for p, o in end.items()}
    first_partition = min(target)
    explicit = replay.plan(
        settings, "parse", replay.parse_start(f"{first_partition}:{target[first_partition]}")
    )
    moved = {p.partition: p.new for p in explicit.partitions}
    assert moved == {
        **{p: o or 0 for p, o in end.items()},
        first_partition: target[first_partition],
    }
    replay.apply(settings, explicit)
    assert _positions(settings, "parse")[first_partition] == target[first_partition]

    for bad in ("yesterday", "7:0", f"{first_partition}:999999", "0:1,0:2"):
        with pytest.raises(replay.BadReplayStart):
            replay.plan(settings, "parse", replay.parse_start(bad))
    result = CliRunner().invoke(
        app, ["replay", "--stage", "parse", "--from", "yesterday"], env=settings_env(settings)
    )
    assert result.exit_code == 2 and "ISO-8601" in result.output
    result = CliRunner().invoke(
        app, ["replay", "--stage", "index", "--from", "earliest"], env=settings_env(settings)
    )
    assert result.exit_code == 2 and "unknown stage" in result.output
