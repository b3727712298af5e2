"""The CLI's one error handler: a RagstreamError is an exit code and one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ragstream import topology
from ragstream.cli import app, errors
from ragstream.errors import RagstreamError
from ragstream.ops.replay import GroupHasMembers


def _failing(exc: Exception) -> object:
    def resolved() -> object:
        raise exc

    return resolved


def test_a_refusal_raised_in_a_command_exits_1_with_its_message_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusal = RagstreamError("the broker refused: [not] a markup tag")
    monkeypatch.setattr("ragstream.cli.ops.resolved", _failing(refusal))
    result = CliRunner().invoke(app, ["alerts"])
    assert result.exit_code == errors.REFUSED == 1
    assert result.output.strip() == "the broker refused: [not] a markup tag"
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_a_usage_error_raised_in_a_command_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragstream.cli.ops.resolved", lambda: None)  # parse_start fails first
    result = CliRunner().invoke(app, ["replay", "--stage", "parse", "--from", "yesterday"])
    assert result.exit_code == errors.USAGE == 2
    assert "ISO-8601" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_each_error_class_has_its_code() -> None:
    from ragstream.devstack import DevstackError
    from ragstream.ops.reembed import UnknownModel

    assert errors.exit_code(UnknownModel("no such model")) == 2
    assert errors.exit_code(DevstackError("install java")) == 2
    assert errors.exit_code(GroupHasMembers("g", "parse", [])) == 1
    assert errors.exit_code(ValueError("a bug")) is None


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragstream.cli.ops.resolved", _failing(ZeroDivisionError("a bug")))
    result = CliRunner().invoke(app, ["alerts"])
    assert isinstance(result.exception, ZeroDivisionError)


def test_a_bogus_stage_is_one_line_listing_the_stages() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ragstream.cli", "worker", "bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"unknown stage 'bogus'; one of {', '.join(topology.STAGE_NAMES)}"
    )
    assert result.stdout == ""


def test_the_worker_stages_are_the_topology_stages() -> None:
    from ragstream.cli.common import Stage, stage

    assert [s.value for s in Stage] == list(topology.STAGE_NAMES)
    assert stage("embed") is Stage("embed")
