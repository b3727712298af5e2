"""The long-running roles and the set-up steps: ``worker``, ``api``, ``monitor``, ``migrate``,
``topics`` (and the hidden ``supervise`` that ``up`` starts)."""

from __future__ import annotations

from typing import Annotated

import typer

from ragstream.cli.common import Stage, console, resolved, stage
from ragstream.topology import STAGE_NAMES

app = typer.Typer()
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
app.add_typer(topics_app, name="topics")


@app.command()
def migrate(revision: Annotated[str, typer.Argument()] = "heads") -> None:
    """Bring the database schema to the Alembic head (or a given revision)."""
    from ragstream.db import migrate as migrations

    migrations.upgrade(resolved().db_url, revision)
    console.print(f"database at {revision}")


@topics_app.command("create")
def topics_create() -> None:
    """Declare every stage topic and its DLQ (idempotent)."""
    from ragstream.kafka import create_topics

    created = create_topics(resolved())
    console.print(
        f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else "")
    )


@app.command()
def worker(
    stage: Annotated[
        Stage, typer.Argument(help="parse, chunk, embed or finalize", metavar="STAGE", parser=stage)
    ],
) -> None:
    """Run one stage's consumer until SIGTERM (finishes its batch, commits, closes)."""
    from ragstream import tracing
    from ragstream.consumers.worker import build_runner
    from ragstream.logs import configure_logging

    settings = resolved()
    configure_logging(settings.log_level)
    tracing.setup(settings, f"ragstream-{stage.value}")
    runner = build_runner(settings, stage.value, health=True)
    runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        tracing.shutdown()


def _stage_counts(values: list[str]) -> dict[str, int]:
    """``["embed=2"]`` -> ``{"embed": 2}``; a bad stage or count is a usage error."""
    counts: dict[str, int] = {}
    for value in values:
        stage, _, count = value.partition("=")
        if stage not in STAGE_NAMES or not count.isdigit():
            raise typer.BadParameter(
                f"{value!r}: expected STAGE=COUNT with STAGE one of {', '.join(STAGE_NAMES)}"
            )
        counts[stage] = int(count)
    return counts


@app.command(hidden=True)
def supervise(
    workers: Annotated[int, typer.Option(help="Workers per stage.")] = 1,
    role: Annotated[list[str] | None, typer.Option(help="Extra command to run, e.g. api.")] = None,
    stage_workers: Annotated[
        list[str] | None,
        typer.Option(help="Workers of one stage, overriding --workers, e.g. embed=2."),
    ] = None,
) -> None:
    """Run and restart the stage workers and extra roles (started by `ragstream up`)."""
    from ragstream.logs import configure_logging
    from ragstream.supervisor import Supervisor

    settings = resolved()
    configure_logging(settings.log_level, json=True)
    Supervisor(
        log_dir=settings.data_dir / "logs",
        workers_per_stage=workers,
        stage_workers=_stage_counts(stage_workers or []),
        embed_threads=settings.embed_threads,
        extra_roles=tuple(tuple(r.split()) for r in role or []),
    ).run()


@app.command()
def monitor() -> None:
    """Watch every stage topic and DLQ; raise alerts (`ragstream up` runs it)."""
    from ragstream import tracing
    from ragstream.db.engine import make_engine
    from ragstream.db.migrate import require_head
    from ragstream.logs import configure_logging
    from ragstream.monitor.app import Monitor

    settings = resolved()
    configure_logging(settings.log_level)
    tracing.setup(settings, "ragstream-monitor")
    engine = make_engine(settings)
    require_head(engine)
    Monitor(settings, engine=engine).run()


@app.command()
def api() -> None:
    """Serve the HTTP API (uvicorn) on API_HOST:API_PORT; OpenAPI docs at /docs."""
    import uvicorn

    from ragstream.api.app import create_app
    from ragstream.logs import configure_logging

    settings = resolved()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)
