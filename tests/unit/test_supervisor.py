"""How the supervisor sizes its workers: per-stage counts and the embed workers' threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from ragstream.cli.run import _stage_counts
from ragstream.supervisor import Supervisor


def test_stage_counts_override_one_stage_and_refuse_nonsense() -> None:
    assert _stage_counts(["embed=2", "parse=3"]) == {"embed": 2, "parse": 3}
    assert _stage_counts([]) == {}
    for bad in ("embedder=2", "embed", "embed=two", "=1"):
        with pytest.raises(typer.BadParameter, match="STAGE=COUNT"):
            _stage_counts([bad])


def test_embed_workers_share_the_cores_unless_threads_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert Supervisor(tmp_path).threads_per_embed_worker() == 0  # one worker: torch's default
    assert Supervisor(tmp_path, stage_workers={"embed": 2}).threads_per_embed_worker() == 4
    assert Supervisor(tmp_path, workers_per_stage=3).threads_per_embed_worker() == 2
    assert Supervisor(tmp_path, stage_workers={"embed": 16}).threads_per_embed_worker() == 1
    configured = Supervisor(tmp_path, stage_workers={"embed": 2}, embed_threads=3)
    assert configured.threads_per_embed_worker() == 3
