"""The ``ragstream`` command. Settings are built here once and passed down."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
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
    console.print(
        f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else "")
    )


@app.command()
def migrate(revision: Annotated[str, typer.Argument()] = "heads") -> None:
    """Bring the database schema to the Alembic head (or a given revision)."""
    from ragstream.db import migrate as migrations

    migrations.upgrade(_resolved().db_url, revision)
    console.print(f"database at {revision}")


@app.command()
def worker(stage: Annotated[str, typer.Argument(help="parse, chunk, embed or finalize")]) -> None:
    """Run one stage's consumer until SIGTERM (finishes its batch, commits, closes)."""
    from ragstream.consumers.worker import build_runner
    from ragstream.logs import configure_logging
    from ragstream.topology import STAGE_NAMES

    if stage not in STAGE_NAMES:
        console.print(f"[red]unknown stage {stage!r}; one of {', '.join(STAGE_NAMES)}[/red]")
        raise typer.Exit(2)
    configure_logging()
    runner = build_runner(_resolved(), stage, health=True)
    runner.install_signal_handlers()
    runner.run()


@app.command(hidden=True)
def supervise(
    workers: Annotated[int, typer.Option(help="Workers per stage.")] = 1,
    role: Annotated[list[str] | None, typer.Option(help="Extra command to run, e.g. api.")] = None,
) -> None:
    """Run and restart the stage workers and extra roles (started by `ragstream up`)."""
    from ragstream.logs import configure_logging
    from ragstream.supervisor import Supervisor

    configure_logging(json=True)
    settings = _resolved()
    Supervisor(
        log_dir=settings.data_dir / "logs",
        workers_per_stage=workers,
        extra_roles=tuple(tuple(r.split()) for r in role or []),
    ).run()


@app.command()
def up(
    embedder: Annotated[
        str, typer.Option(help="Embedding backend: hash, minilm or openai.")
    ] = "minilm",
    ingest_path: Annotated[
        list[Path] | None, typer.Option("--ingest", help="Submit these files or directories.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="With --ingest: follow documents to the end.")] = True,
    workers: Annotated[int, typer.Option(help="Workers per stage.")] = 1,
    timeout: Annotated[float, typer.Option(help="With --ingest: seconds to wait.")] = 600,
) -> None:
    """Start everything: the devstack (unless addresses are set), schema, topics, workers."""
    import os

    from ragstream.db import migrate as migrations
    from ragstream.kafka import create_topics
    from ragstream.supervisor import start_background

    base = _settings().model_copy(update={"embedder": embedder})
    if base.kafka_bootstrap is None or base.database_url is None:
        console.print("starting the devstack (Apache Kafka + PostgreSQL)...")
        try:
            Devstack(base).up()
        except DevstackError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    settings = resolve_addresses(base)
    migrations.upgrade(settings.db_url)
    create_topics(settings)
    env = {
        "RAGSTREAM_EMBEDDER": embedder,
        "RAGSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
        "RAGSTREAM_DATABASE_URL": settings.db_url,
        "RAGSTREAM_DATA_DIR": str(settings.data_dir),
    }
    os.environ.update(env)
    roles = [name for name in UP_ROLES if name in _commands()]
    pid = start_background(
        _supervisor_pid(settings), settings.data_dir / "logs", env, workers, roles
    )
    console.print(f"kafka      {settings.bootstrap}")
    console.print(f"postgres   {settings.db_url}")
    console.print(f"workers    parse, chunk, embed, finalize x{workers} (supervisor pid {pid})")
    console.print(f"embedder   {embedder}")
    console.print(f"logs       {settings.data_dir / 'logs'}")
    if ingest_path:
        _ingest(settings, ingest_path, wait=wait, timeout=timeout, as_json=False)


UP_ROLES = ("api", "monitor")
"""Long-running roles `ragstream up` starts beside the workers, once they exist."""


def _commands() -> set[str]:
    return {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}


def _supervisor_pid(settings: Settings) -> Path:
    return settings.data_dir / "supervisor.pid"


@app.command()
def down() -> None:
    """Stop the workers started by `ragstream up`, then the devstack."""
    from ragstream.supervisor import stop_background

    settings = _settings()
    if stop_background(_supervisor_pid(settings)):
        console.print("workers stopped")
    if settings.kafka_bootstrap is None or settings.database_url is None:
        Devstack(settings).down()
        console.print("devstack stopped")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (recursive).")],
    wait: Annotated[bool, typer.Option(help="Follow the documents to the end.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
) -> None:
    """Submit documents to the pipeline."""
    _ingest(_resolved(), paths, wait=wait, timeout=timeout, as_json=as_json)


def _ingest(
    settings: Settings, paths: list[Path], *, wait: bool, timeout: float, as_json: bool
) -> None:
    from ragstream.db.engine import make_engine
    from ragstream.ingest import submit_paths, summary, wait_for
    from ragstream.producers.producer import EventProducer
    from ragstream.producers.submit import Submitter
    from ragstream.schemas.codec import make_codec

    started = time.monotonic()
    producer = EventProducer(settings)
    submitter = Submitter(settings, make_engine(settings), producer, make_codec(settings))
    items = submit_paths(submitter, paths, settings.max_upload_bytes)
    if wait:
        wait_for(submitter, items, timeout_s=timeout, console=None if as_json else console)
    producer.close()
    report = summary(items, time.monotonic() - started)
    if as_json:
        print(json.dumps(report))
        return
    table = Table("path", "status", "chunks", "error")
    for item in report["items"]:
        table.add_row(item["path"], item["status"], str(item["chunks"]), item["error"] or "")
    Console().print(table)
    Console().print(
        f"{report['documents']} documents: {report['complete']} complete, "
        f"{report['failed']} failed, {report['stuck']} not finished; "
        f"{report['chunks']} chunks in {report['elapsed_s']:.1f}s"
    )


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Documents by status and each stage's consumer lag."""
    from ragstream.db.engine import make_engine
    from ragstream.progress import stage_lag, status_counts

    settings = _resolved()
    documents, lag = status_counts(make_engine(settings)), stage_lag(settings)
    if as_json:
        print(json.dumps({"documents": documents, "lag": lag, "kafka": settings.bootstrap}))
        return
    table = Table("status", "documents")
    for name, count in sorted(documents.items()):
        table.add_row(name, str(count))
    Console().print(table)
    lags = Table("stage", "lag")
    for name, count in lag.items():
        lags.add_row(name, str(count))
    Console().print(lags)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
