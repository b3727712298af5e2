"""Starting and stopping the whole stack: ``up``, ``down`` and the ``devstack`` group."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragstream.cli.common import BrokersOption, console, settings, supervisor_pid
from ragstream.devstack import Devstack, resolve_addresses, with_brokers
from ragstream.settings import Settings

app = typer.Typer()
devstack_app = typer.Typer(no_args_is_help=True, help="The local Kafka + PostgreSQL stack.")
app.add_typer(devstack_app, name="devstack")

UP_ROLES = ("api", "monitor")
"""Long-running roles `ragstream up` starts beside the workers."""


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
    embed_workers: Annotated[
        int,
        typer.Option(help="Embed workers (0: as many as --workers); they share the cores."),
    ] = 0,
    timeout: Annotated[float, typer.Option(help="With --ingest: seconds to wait.")] = 600,
    brokers: BrokersOption = None,
) -> None:
    """Start everything: the devstack (unless addresses are set), schema, topics, workers."""
    import os

    from ragstream.cli.documents import ingest_directly
    from ragstream.db import migrate as migrations
    from ragstream.kafka import create_topics
    from ragstream.supervisor import start_background

    base = settings().model_copy(update={"embedder": embedder})
    if brokers is not None:
        base = with_brokers(base, brokers)
    if base.kafka_bootstrap is None or base.database_url is None:
        console.print("starting the devstack (Apache Kafka + PostgreSQL)...")
        Devstack(base).up()
    resolved = resolve_addresses(base)
    migrations.upgrade(resolved.db_url)
    create_topics(resolved)
    env = worker_env(resolved)
    os.environ.update(env)
    roles = list(UP_ROLES)
    api_key = _ensure_api_key(resolved)
    operator_key = _ensure_operator_key(resolved)
    pid = start_background(
        supervisor_pid(resolved),
        resolved.data_dir / "logs",
        env,
        workers,
        roles,
        stage_workers={"embed": embed_workers} if embed_workers else None,
    )
    console.print(f"kafka      {resolved.bootstrap}")
    console.print(f"postgres   {resolved.db_url}")
    console.print(
        f"workers    parse, chunk, finalize x{workers}, embed x{embed_workers or workers} "
        f"(supervisor pid {pid})"
    )
    if resolved.s3_endpoint_url:
        console.print(f"s3         {resolved.s3_endpoint_url}")
    console.print(f"embedder   {embedder}")
    console.print(f"logs       {resolved.data_dir / 'logs'}")
    console.print(f"api        {resolved.api_url}  (docs {resolved.api_url}/docs)")
    console.print(f"api key    {api_key[0]}  (tenant {api_key[1]})")
    console.print(f"monitor    metrics on :{resolved.monitor_metrics_port}/metrics")
    console.print(f"dashboard  http://127.0.0.1:{resolved.api_port}/dashboard")
    if operator_key is None:
        console.print("           (needs an operator key: add one as 'KEY:*' to API_KEYS)")
    else:
        console.print(f"operator   {operator_key}  (dashboard: any user, this as password)")
    if ingest_path:
        ingest_directly(resolved, ingest_path, wait=wait, timeout=timeout, as_json=False)


def _ensure_api_key(settings: Settings) -> tuple[str, str]:
    """The key `up` prints, and its tenant ('*' for an operator key)."""
    from ragstream.api.keys import ensure_key, load_keys

    key = ensure_key(settings)[0]
    return key, load_keys(settings)[key]


def _ensure_operator_key(settings: Settings) -> str | None:
    from ragstream.api.keys import ensure_operator_key

    return ensure_operator_key(settings)


@app.command()
def down() -> None:
    """Stop the workers started by `ragstream up`, then the devstack."""
    from ragstream.supervisor import stop_background

    current = settings()
    if stop_background(supervisor_pid(current)):
        console.print("workers stopped")
    if current.kafka_bootstrap is None or current.database_url is None:
        Devstack(current).down()
        console.print("devstack stopped")


@devstack_app.command("up")
def devstack_up(brokers: BrokersOption = None) -> None:
    """Start Apache Kafka (KRaft) and PostgreSQL + pgvector locally."""
    current = settings() if brokers is None else with_brokers(settings(), brokers)
    started = time.monotonic()
    addresses = Devstack(current).up()
    console.print(f"kafka     {addresses.kafka_bootstrap}")
    console.print(f"postgres  {addresses.database_url}")
    console.print(f"state     {current.state_file}  ({time.monotonic() - started:.1f}s)")


@devstack_app.command("down")
def devstack_down() -> None:
    """Stop the local stack; data stays for the next start."""
    Devstack(settings()).down()
    console.print("devstack stopped")


@devstack_app.command("status")
def devstack_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each component with its address, version and health."""
    status = Devstack(settings()).status()
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


def worker_env(resolved: Settings) -> dict[str, str]:
    """What the processes ``up`` starts must be told: the addresses it resolved (the
    devstack's, S3Proxy's with its credentials included), not found again by each."""
    env = {
        "RAGSTREAM_EMBEDDER": resolved.embedder,
        "RAGSTREAM_KAFKA_BOOTSTRAP": resolved.bootstrap,
        "RAGSTREAM_DATABASE_URL": resolved.db_url,
        "RAGSTREAM_DATA_DIR": str(resolved.data_dir),
        "RAGSTREAM_REPLICATION_FACTOR": str(resolved.replication_factor),
        "RAGSTREAM_MIN_INSYNC_REPLICAS": str(resolved.min_insync_replicas),
    }
    if resolved.s3_endpoint_url:
        env["RAGSTREAM_S3_ENDPOINT_URL"] = resolved.s3_endpoint_url
        if resolved.s3_access_key_id:
            env["RAGSTREAM_S3_ACCESS_KEY_ID"] = resolved.s3_access_key_id
        if resolved.s3_secret_access_key:
            env["RAGSTREAM_S3_SECRET_ACCESS_KEY"] = resolved.s3_secret_access_key.get_secret_value()
    return env
