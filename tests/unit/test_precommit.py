"""The pre-commit hooks run the same lint, format and type checks as `make test`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _make_target(name: str) -> list[list[str]]:
    """The commands of one Makefile target, ``$(BIN)/`` spelled as the virtualenv's path."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{name}:", line))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        commands.append(shlex.split(line.strip().replace("$(BIN)/", ".venv/bin/")))
    return commands


def _hooks() -> dict[str, list[str]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    return {
        hook["id"]: shlex.split(hook["entry"]) for repo in config["repos"] for hook in repo["hooks"]
    }


def test_the_hooks_are_the_makefile_lint_and_typecheck_commands() -> None:
    lint = _make_target("lint")
    assert [c[:3] for c in lint] == [
        [".venv/bin/ruff", "check", "ragstream"],
        [".venv/bin/ruff", "format", "--check"],
    ]
    hooks = _hooks()
    assert hooks["ruff-check"] == lint[0]
    assert hooks["ruff-format"] == lint[1]
    assert hooks["mypy"] == _make_target("typecheck")[0]


def test_every_hook_runs_on_the_whole_tree_from_the_virtualenv() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    for repo in config["repos"]:
        assert repo["repo"] == "local"
        for hook in repo["hooks"]:
            assert hook["language"] == "system"
            assert hook["pass_filenames"] is False, hook["id"]
            assert hook["entry"].startswith(".venv/bin/"), hook["id"]
