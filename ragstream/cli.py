"""The ``ragstream`` command. Settings are built here once and passed down."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragstream.devstack import Devstack, DevstackError, resolve_addresses
from ragstream.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
devstack_app = typer.Typer(no_args_is_help=True, help="The local Kafka + PostgreSQL stack.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
app.add_typer(devstack_app, name="devstack")
app.add_typer(topics_app, name="topics")

console = Console(stderr=True)


def _settings() -> Settings:
    return Settings()


def _resolved() -> Settings:
    try:
        return resolve_addresses(_settings())
    except DevstackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@devstack_app.command("up")
def devstack_up() -> None:
    """Start Apache Kafka (KRaft) and PostgreSQL + pgvector locally."""
    settings = _settings()
    started = time.monotonic()
    try:
        addresses = Devstack(settings).up()
    except DevstackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"kafka     {addresses.kafka_bootstrap}")
    console.print(f"postgres  {addresses.database_url}")
    console.print(f"state     {settings.state_file}  ({time.monotonic() - started:.1f}s)")


@devstack_app.command("down")
def devstack_down() -> None:
    """Stop the local stack; data stays for the next start."""
    Devstack(_settings()).down()
    console.print("devstack stopped")


@devstack_app.command("status")
def devstack_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each component with its address, version and health."""
    status = Devstack(_settings()).status()
    if as_json:
        print(json.dumps(status, indent=2))
        return
    table = Table("component", "healthy", "address", "version")
    for name, info in status.items():
        version = info["version"] or "-"
        if name == "kafka":
            version = f"{version} ({info['mode']})"
        elif info.get("pgvector"):
            version = f"{version}, pgvector {info['pgvector']}"
        table.add_row(name, "yes" if info["healthy"] else "no", info["address"] or "-", version)
    Console().print(table)
    if not all(info["healthy"] for info in status.values()):
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create() -> None:
    """Declare every stage topic and its DLQ (idempotent)."""
    from ragstream.kafka import create_topics

    created = create_topics(_resolved())
    console.print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@app.command()
def migrate(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Bring the database schema to the Alembic head (or a given revision)."""
    from ragstream.db import migrate as migrations

    migrations.upgrade(_resolved().db_url, revision)
    console.print(f"database at {revision}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
