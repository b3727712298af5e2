"""The ``ragstream`` command. Settings are built here once and passed down."""

from __future__ import annotations

import sys

import typer

from ragstream.cli import bench, documents, ops, run, stack
from ragstream.cli import sync as sync_cli
from ragstream.cli.errors import RagstreamGroup

app = typer.Typer(
    cls=RagstreamGroup,
    no_args_is_help=True,
    add_completion=False,
    help="The ``ragstream`` command. Settings are built here once and passed down.",
)
for group in (stack.app, run.app, documents.app, ops.app, bench.app, sync_cli.app):
    app.add_typer(group)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
