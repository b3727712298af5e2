"""What every command group shares: the console, the settings, the stage names."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ragstream.devstack import resolve_addresses
from ragstream.settings import Settings
from ragstream.topology import STAGE_NAMES

console = Console(stderr=True)
"""Progress and errors go to stderr; results (tables, JSON) to stdout."""

Stage = enum.StrEnum("Stage", [(name, name) for name in STAGE_NAMES])  # type: ignore[misc]
"""The stages of the topology (ragstream/topology.py), one member each."""


def stage(value: str) -> Stage:
    """The :data:`Stage` named ``value``; anything else is a usage error listing the stages."""
    from ragstream.cli.errors import UsageError

    if isinstance(value, Stage):
        return value
    try:
        return Stage(value)
    except ValueError:
        raise UsageError(f"unknown stage {value!r}; one of {', '.join(STAGE_NAMES)}") from None


def settings() -> Settings:
    return Settings()


def resolved() -> Settings:
    """The settings with the devstack's addresses filled in (a DevstackError if it is down)."""
    return resolve_addresses(settings())


def supervisor_pid(settings: Settings) -> Path:
    return settings.data_dir / "supervisor.pid"


BrokersOption = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        min=1,
        help="Kafka brokers: 1 (one KRaft node) or e.g. 3 (a controller and three brokers, "
        "topics replicated 3 ways, 2 in sync); default RAGSTREAM_DEVSTACK_BROKERS, else 1.",
    ),
]
