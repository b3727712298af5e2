"""The ``ragstream`` command. Settings are built here once and passed down."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragstream.devstack import Devstack, DevstackError, resolve_addresses, with_brokers
from ragstream.settings import Settings

if TYPE_CHECKING:
    from ragstream.ingest import Item

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


def _stage_counts(values: list[str]) -> dict[str, int]:
    """``["embed=2"]`` -> ``{"embed": 2}``; a bad stage or count is a usage error."""
    from ragstream.topology import STAGE_NAMES

    counts: dict[str, int] = {}
    for value in values:
        stage, _, count = value.partition("=")
        if stage not in STAGE_NAMES or not count.isdigit():
            raise typer.BadParameter(
                f"{value!r}: expected STAGE=COUNT with STAGE one of {', '.join(STAGE_NAMES)}"
            )
        counts[stage] = int(count)
    return counts


BrokersOption = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        min=1,
        help="Kafka brokers: 1 (one KRaft node) or e.g. 3 (a controller and three brokers, "
        "topics replicated 3 ways, 2 in sync); default RAGSTREAM_DEVSTACK_BROKERS, else 1.",
    ),
]


@devstack_app.command("up")
def devstack_up(brokers: BrokersOption = None) -> None:
    """Start Apache Kafka (KRaft) and PostgreSQL + pgvector locally."""
    settings = _settings() if brokers is None else with_brokers(_settings(), brokers)
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
    settings = _resolved()
    configure_logging(settings.log_level)
    from ragstream import tracing

    tracing.setup(settings, f"ragstream-{stage}")
    runner = build_runner(settings, stage, health=True)
    runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        tracing.shutdown()


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

    settings = _resolved()
    configure_logging(settings.log_level, json=True)
    Supervisor(
        log_dir=settings.data_dir / "logs",
        workers_per_stage=workers,
        stage_workers=_stage_counts(stage_workers or []),
        embed_threads=settings.embed_threads,
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
    embed_workers: Annotated[
        int,
        typer.Option(help="Embed workers (0: as many as --workers); they share the cores."),
    ] = 0,
    timeout: Annotated[float, typer.Option(help="With --ingest: seconds to wait.")] = 600,
    brokers: BrokersOption = None,
) -> None:
    """Start everything: the devstack (unless addresses are set), schema, topics, workers."""
    import os

    from ragstream.db import migrate as migrations
    from ragstream.kafka import create_topics
    from ragstream.supervisor import start_background

    base = _settings().model_copy(update={"embedder": embedder})
    if brokers is not None:
        base = with_brokers(base, brokers)
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
        "RAGSTREAM_REPLICATION_FACTOR": str(settings.replication_factor),
        "RAGSTREAM_MIN_INSYNC_REPLICAS": str(settings.min_insync_replicas),
    }
    os.environ.update(env)
    roles = [name for name in UP_ROLES if name in _commands()]
    api_key = _ensure_api_key(settings) if "api" in roles else None
    operator_key = _ensure_operator_key(settings) if "api" in roles else None
    pid = start_background(
        _supervisor_pid(settings),
        settings.data_dir / "logs",
        env,
        workers,
        roles,
        stage_workers={"embed": embed_workers} if embed_workers else None,
    )
    console.print(f"kafka      {settings.bootstrap}")
    console.print(f"postgres   {settings.db_url}")
    console.print(
        f"workers    parse, chunk, finalize x{workers}, embed x{embed_workers or workers} "
        f"(supervisor pid {pid})"
    )
    console.print(f"embedder   {embedder}")
    console.print(f"logs       {settings.data_dir / 'logs'}")
    if api_key is not None:
        console.print(f"api        {settings.api_url}  (docs {settings.api_url}/docs)")
        console.print(f"api key    {api_key[0]}  (tenant {api_key[1]})")
    if "monitor" in roles:
        console.print(f"monitor    metrics on :{settings.monitor_metrics_port}/metrics")
    if "api" in roles:
        console.print(f"dashboard  http://127.0.0.1:{settings.api_port}/dashboard")
        if operator_key is None:
            console.print("           (needs an operator key: add one as 'KEY:*' to API_KEYS)")
        else:
            console.print(f"operator   {operator_key}  (dashboard: any user, this as password)")
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
    api: Annotated[
        str | None, typer.Option("--api", help="Submit through the HTTP API at this URL.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="With --api: the key (default: the one `up` made)."),
    ] = None,
) -> None:
    """Submit documents to the pipeline."""
    if api is None:
        _ingest(_resolved(), paths, wait=wait, timeout=timeout, as_json=as_json)
        return
    from ragstream.api.client import submit_paths_via_api

    key = api_key or _stored_api_key(_settings())
    started = time.monotonic()
    items = submit_paths_via_api(api, key, paths, wait=wait, timeout_s=timeout)
    _report(items, time.monotonic() - started, as_json=as_json)


def _ensure_api_key(settings: Settings) -> tuple[str, str]:
    """The key `up` prints, and its tenant ('*' for an operator key)."""
    from ragstream.api.keys import InvalidApiKeys, ensure_key, load_keys

    try:
        key = ensure_key(settings)[0]
        return key, load_keys(settings)[key]
    except InvalidApiKeys as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _ensure_operator_key(settings: Settings) -> str | None:
    from ragstream.api.keys import ensure_operator_key

    return ensure_operator_key(settings)


def _stored_api_key(settings: Settings) -> str:
    from ragstream.api.keys import cli_key, is_operator, key_file, load_keys

    tenants = {k: t for k, t in load_keys(settings).items() if not is_operator(t)}
    found = cli_key(tenants, settings.tenant)
    if found is not None:
        return found[0]
    console.print(
        f"[red]no API key: pass --api-key or run `ragstream up` ({key_file(settings)})[/red]"
    )
    raise typer.Exit(2)


def _ingest(
    settings: Settings, paths: list[Path], *, wait: bool, timeout: float, as_json: bool
) -> None:
    from ragstream.db.engine import make_engine
    from ragstream.ingest import submit_paths, wait_for
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
    _report(items, time.monotonic() - started, as_json=as_json)


def _report(items: list[Item], elapsed_s: float, *, as_json: bool) -> None:
    from ragstream.ingest import summary

    report = summary(items, elapsed_s)
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
    """Documents by status, each stage's consumer lag, and each embedding model's coverage."""
    from ragstream.db.engine import make_engine
    from ragstream.ops.reembed import coverage
    from ragstream.progress import stage_lag, status_counts

    settings = _resolved()
    engine = make_engine(settings)
    documents, lag = status_counts(engine), stage_lag(settings)
    models = coverage(engine)
    if as_json:
        print(
            json.dumps(
                {
                    "documents": documents,
                    "lag": lag,
                    "kafka": settings.bootstrap,
                    "api_url": settings.api_url,
                    "embedding_models": [
                        {
                            "model": m.model,
                            "state": m.state,
                            "vectors": m.vectors,
                            "chunks": m.chunks,
                            "coverage_percent": round(m.percent, 2),
                        }
                        for m in models
                    ],
                }
            )
        )
        return
    table = Table("status", "documents")
    for name, count in sorted(documents.items()):
        table.add_row(name, str(count))
    Console().print(table)
    lags = Table("stage", "lag")
    for name, count in lag.items():
        lags.add_row(name, str(count))
    Console().print(lags)
    per_model = Table("embedding model", "state", "vectors / chunks of complete documents")
    for m in models:
        per_model.add_row(m.model, m.state or "-", f"{m.vectors} / {m.chunks} ({m.percent:.1f}%)")
    Console().print(per_model)


@app.command()
def monitor() -> None:
    """Watch every stage topic and DLQ; raise alerts (`ragstream up` runs it)."""
    from ragstream import tracing
    from ragstream.db.engine import make_engine
    from ragstream.db.migrate import require_head
    from ragstream.logs import configure_logging
    from ragstream.monitor.app import Monitor

    settings = _resolved()
    configure_logging(settings.log_level)
    tracing.setup(settings, "ragstream-monitor")
    engine = make_engine(settings)
    require_head(engine)
    Monitor(settings, engine=engine).run()


@app.command()
def alerts(
    as_json: Annotated[bool, typer.Option("--json", help="Print the alerts as JSON.")] = False,
    hours: Annotated[float, typer.Option(help="Also show alerts resolved this recently.")] = 24,
) -> None:
    """Open alerts, and those resolved recently (the monitor raises them)."""
    from ragstream.db.engine import make_engine
    from ragstream.monitor import store

    engine = make_engine(_resolved())
    with engine.connect() as conn:
        found = store.list_alerts(conn, include_resolved_s=hours * 3600)
    if as_json:
        print(json.dumps({"alerts": found}, indent=2))
        return
    table = Table("state", "kind", "stage", "document", "first seen", "message")
    for a in found:
        table.add_row(
            a["state"],
            a["kind"],
            a["stage"] or "-",
            a["document_id"] or "-",
            (a["first_seen"] or "")[:19],
            a["message"],
        )
    Console().print(table)
    opened = sum(1 for a in found if a["state"] == "open")
    Console().print(f"{opened} open, {len(found) - opened} resolved in the last {hours:g}h")


@app.command()
def bench(
    docs: Annotated[int, typer.Option(help="Documents in the corpus.")] = 30,
    embedder: Annotated[str, typer.Option(help="Embedding backend: hash or minilm.")] = "minilm",
    workers_per_stage: Annotated[int, typer.Option(help="Workers per stage, main run.")] = 1,
    embed_workers: Annotated[
        int, typer.Option(help="Embed workers in every run (0: as many as the other stages).")
    ] = 0,
    embed_threads: Annotated[
        int, typer.Option(help="Model threads per embed worker (0: torch's default).")
    ] = 0,
    scaling: Annotated[
        str, typer.Option(help="Workers per stage of the scaling runs, e.g. 1,2 (empty: none).")
    ] = "1,2",
    seed: Annotated[int, typer.Option(help="Corpus seed.")] = 0,
    max_doc_mb: Annotated[float, typer.Option(help="Size of the largest document.")] = 2.0,
    peer: Annotated[bool, typer.Option(help="Run the LlamaIndex peer.")] = True,
    memory_pdf_pages: Annotated[int, typer.Option(help="Pages of the long PDF (0: none).")] = 200,
    memory_text_mb: Annotated[float, typer.Option(help="Size of the big text (0: none).")] = 50.0,
    latency_docs: Annotated[int, typer.Option(help="Single 10 KB documents timed.")] = 10,
    out: Annotated[
        Path | None, typer.Option(help="Also write bench.json and bench.md in this directory.")
    ] = None,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the corpus and worker logs in this directory.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Measure the pipeline beside its limits and a peer, in one run (see bench/README.md)."""
    from ragstream.benchmark import BenchOptions, markdown, run_bench

    if embedder not in ("hash", "minilm"):
        console.print(f"[red]--embedder is hash or minilm, not {embedder!r}[/red]")
        raise typer.Exit(2)
    base = _settings()
    if base.kafka_bootstrap is None or base.database_url is None:
        try:
            Devstack(base).up()
        except DevstackError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    options = BenchOptions(
        docs=docs,
        embedder="minilm" if embedder == "minilm" else "hash",
        workers_per_stage=workers_per_stage,
        embed_workers=embed_workers,
        embed_threads=embed_threads,
        scaling=tuple(int(k) for k in scaling.split(",") if k.strip()),
        seed=seed,
        max_doc_mb=max_doc_mb,
        peer=peer,
        memory_pdf_pages=memory_pdf_pages,
        memory_text_mb=memory_text_mb,
        latency_docs=latency_docs,
        keep=keep,
    )
    report = run_bench(resolve_addresses(base), options, lambda m: console.print(m, markup=False))
    table = markdown(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "bench.md").write_text(table)
    print(json.dumps(report, indent=2) if as_json else table)


# --- replay, re-embedding and the dead-letter topics --------------------------

dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter topics: list, show, replay.")
app.add_typer(dlq_app, name="dlq")


def _refused(exc: Exception, code: int = 1) -> typer.Exit:
    console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
    return typer.Exit(code)


@app.command()
def replay(
    stage: Annotated[str, typer.Option(help="The stage to replay: parse, chunk, embed, finalize.")],
    start: Annotated[
        str,
        typer.Option(
            "--from", help="earliest, an ISO-8601 time, or partition:offset pairs (0:12,1:40)."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the offsets it would set; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Reset a stage's consumer group so it reads its topic again (its workers must be stopped)."""
    from ragstream.errors import RagstreamError
    from ragstream.ops import replay as replays

    settings = _resolved()
    try:
        plan = replays.plan(settings, stage, replays.parse_start(start))
    except replays.BadReplayStart as exc:
        raise _refused(exc, 2) from None
    except RagstreamError as exc:
        raise _refused(exc) from None
    if as_json:
        rows = [
            {
                "partition": p.partition,
                "current": p.state.committed,
                "new": p.new,
                "end": p.state.high,
                "reprocess": p.reprocess,
            }
            for p in plan.partitions
        ]
        print(json.dumps({"group": plan.group, "topic": plan.topic, "partitions": rows}))
    else:
        table = Table("partition", "current", "new", "end", "to reprocess")
        for p in plan.partitions:
            current = "-" if p.state.committed is None else str(p.state.committed)
            table.add_row(
                str(p.partition), current, str(p.new), str(p.state.high), str(p.reprocess)
            )
        Console().print(table)
    verb = "would reprocess" if dry_run else "reprocesses"
    console.print(
        f"{plan.group} on {plan.topic} from {plan.start.describe()}: "
        f"{verb} {plan.reprocess} message(s)",
        markup=False,
    )
    if dry_run:
        if plan.members:
            refusal = replays.GroupHasMembers(plan.group, plan.stage, list(plan.members))
            console.print(f"[yellow]not possible now: {refusal}[/yellow]", highlight=False)
        return
    try:
        replays.apply(settings, plan)
    except RagstreamError as exc:
        raise _refused(exc) from None
    console.print(f"offsets of {plan.group} set; start the {stage} workers to reprocess")


@app.command()
def reembed(
    model: Annotated[str, typer.Option(help="hash, minilm, openai or openai:<model name>.")],
    swap: Annotated[
        bool, typer.Option(help="Then make it the model search uses, if coverage is 100%.")
    ] = False,
    follow: Annotated[
        bool, typer.Option(help="Keep embedding new chunks until SIGTERM/Ctrl-C.")
    ] = False,
    idle_timeout: Annotated[
        float, typer.Option(help="Stop after this many seconds without new chunks.")
    ] = 10.0,
) -> None:
    """Embed every chunk with another model beside the live one (a shadow build), then swap."""
    from ragstream.db.engine import make_engine
    from ragstream.errors import RagstreamError
    from ragstream.ops import reembed as reembeds

    settings = _resolved()
    try:
        result = reembeds.reembed(settings, model, idle_timeout_s=idle_timeout, follow=follow)
    except reembeds.UnknownModel as exc:
        raise _refused(exc, 2) from None
    console.print(
        f"{result.model}: {result.processed} chunk(s) embedded, {result.failed} failed, "
        f"group {result.group} lag {result.lag}; coverage {result.coverage.vectors}/"
        f"{result.coverage.chunks} ({result.coverage.percent:.1f}%)",
        markup=False,
    )
    if swap:
        try:
            reembeds.swap(make_engine(settings), settings, result.spec, result.model)
        except RagstreamError as exc:
            raise _refused(exc) from None
        console.print(f"search now uses {result.model}")


@dlq_app.command("list")
def dlq_list(
    stage: Annotated[str | None, typer.Option(help="Only this stage's DLQ.")] = None,
    newest: Annotated[int, typer.Option(help="How many of the newest errors to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Messages in each DLQ, by error class, and the newest errors."""
    from ragstream.errors import RagstreamError
    from ragstream.ops import dlq as dlqs

    settings = _resolved()
    try:
        summaries = dlqs.summarize(settings, stage, newest)
    except RagstreamError as exc:
        raise _refused(exc, 2) from None
    if as_json:
        out = [
            {
                "stage": s.dlq.stage,
                "topic": s.dlq.topic,
                "messages": s.total,
                "pending": s.pending,
                "attempts_used_up": s.exhausted,
                "by_error_class": dict(s.by_class),
                "newest": [m.as_dict() for m in s.newest],
            }
            for s in summaries
        ]
        print(json.dumps(out, indent=2))
        return
    table = Table("stage", "dlq", "messages", "pending", "attempts used up", "by error class")
    for s in summaries:
        classes = ", ".join(f"{name} {n}" for name, n in s.by_class.most_common())
        table.add_row(
            s.dlq.stage, s.dlq.topic, str(s.total), str(s.pending), str(s.exhausted), classes
        )
    Console().print(table)
    recent = Table("id", "time (UTC)", "error class", "attempt", "error")
    for m in sorted(
        (m for s in summaries for m in s.newest), key=lambda m: m.timestamp_ms, reverse=True
    )[:newest]:
        recent.add_row(
            m.id, m.time.isoformat()[:19], m.error_class, str(m.attempt), m.error_message[:100]
        )
    Console().print(recent)


@dlq_app.command("show")
def dlq_show(
    message_id: Annotated[str, typer.Argument(help="<topic>:<partition>:<offset>")],
) -> None:
    """One DLQ message: its headers and, when it is an event, its fields."""
    from ragstream.errors import RagstreamError
    from ragstream.ops import dlq as dlqs
    from ragstream.schemas.codec import make_codec

    settings = _resolved()
    try:
        letter = dlqs.show(settings, message_id)
    except RagstreamError as exc:
        raise _refused(exc, 2) from None
    shown = letter.as_dict()
    event = dlqs.decoded(make_codec(settings), letter)
    if event is not None:
        shown["event"] = {"schema": event[0], "fields": event[1]}
    else:
        shown["value_preview"] = repr((letter.value or b"")[:200])
    print(json.dumps(shown, indent=2, default=str))


@dlq_app.command("replay")
def dlq_replay(
    stage: Annotated[str | None, typer.Option(help="Only this stage's DLQ.")] = None,
    error_class: Annotated[
        str | None, typer.Option(help="Only messages of this error class, e.g. MissingBlob.")
    ] = None,
) -> None:
    """Send pending DLQ messages back to their topic, attempt + 1 (never past the maximum)."""
    from ragstream.db.engine import make_engine
    from ragstream.errors import RagstreamError
    from ragstream.ops import dlq as dlqs
    from ragstream.schemas.codec import make_codec

    settings = _resolved()
    try:
        outcomes = dlqs.replay(
            settings,
            make_engine(settings),
            make_codec(settings),
            stage=stage,
            error_class=error_class,
        )
    except RagstreamError as exc:
        raise _refused(exc) from None
    table = Table("stage", "replayed", "documents reopened", "kept", "other classes", "done before")
    for o in outcomes:
        table.add_row(
            o.dlq.stage,
            str(len(o.replayed)),
            str(o.documents_reopened),
            str(len(o.kept)),
            str(o.filtered),
            str(o.already),
        )
    Console().print(table)
    for o in outcomes:
        for m in o.kept:
            console.print(
                f"kept {m.id}: attempt {m.attempt} of {settings.dlq_max_attempts} used "
                f"({m.error_class}: {m.error_message[:100]})",
                markup=False,
            )
        if o.deferred:
            console.print(f"{o.deferred} message(s) of {o.dlq.topic} left for the next replay")


@app.command()
def api() -> None:
    """Serve the HTTP API (uvicorn) on API_HOST:API_PORT; OpenAPI docs at /docs."""
    import uvicorn

    from ragstream.api.app import create_app
    from ragstream.logs import configure_logging

    settings = _resolved()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    k: Annotated[int, typer.Option(help="How many chunks to show.")] = 5,
    tenant: Annotated[str | None, typer.Option(help="Tenant to search (default TENANT).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model to search (hash, minilm, openai:<name>); default the active one."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON.")] = False,
) -> None:
    """Search the complete documents: the chunks closest to QUERY, best first."""
    from ragstream.db.engine import make_engine
    from ragstream.errors import RagstreamError
    from ragstream.search import QueryEmbedders
    from ragstream.search import search as find

    settings = _resolved()
    engine = make_engine(settings)
    embedders = QueryEmbedders(settings, engine)
    try:
        embedder = embedders.get(model)
        hits = find(engine, embedder, query, tenant=tenant or settings.tenant, k=k)
    except RagstreamError as exc:
        raise _refused(exc, 2) from None
    finally:
        embedders.close()
    if as_json:
        print(
            json.dumps(
                [
                    {**h.__dict__, "chunk_id": str(h.chunk_id), "document_id": str(h.document_id)}
                    for h in hits
                ]
            )
        )
        return
    table = Table("score", "document", "pages", "section", "text")
    for h in hits:
        text = " ".join(h.text.split())
        table.add_row(
            f"{h.score:.3f}",
            h.filename or str(h.document_id)[:8],
            ",".join(map(str, h.pages)) or "-",
            " > ".join(h.heading_path) or "-",
            text[:160] + ("..." if len(text) > 160 else ""),
        )
    Console().print(table)
    if not hits:
        console.print(f"no complete documents match (model {embedder.name})")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
