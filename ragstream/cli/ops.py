"""Operating the pipeline: ``replay``, ``reembed``, ``distill-static``, ``dlq``, ``alerts``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragstream.cli.common import console, resolved, settings

app = typer.Typer()
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter topics: list, show, replay.")
app.add_typer(dlq_app, name="dlq")


@app.command()
def alerts(
    as_json: Annotated[bool, typer.Option("--json", help="Print the alerts as JSON.")] = False,
    hours: Annotated[float, typer.Option(help="Also show alerts resolved this recently.")] = 24,
) -> None:
    """Open alerts, and those resolved recently (the monitor raises them)."""
    from ragstream.db.engine import make_engine
    from ragstream.monitor import store

    engine = make_engine(resolved())
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
    from ragstream.ops import replay as replays

    settings = resolved()
    plan = replays.plan(settings, stage, replays.parse_start(start))
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
    replays.apply(settings, plan)
    console.print(f"offsets of {plan.group} set; start the {stage} workers to reprocess")


@app.command()
def reembed(
    model: Annotated[
        str, typer.Option(help="hash, minilm, static, openai or openai:<model name>.")
    ],
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
    from ragstream.ops import reembed as reembeds

    settings = resolved()
    result = reembeds.reembed(settings, model, idle_timeout_s=idle_timeout, follow=follow)
    console.print(
        f"{result.model}: {result.processed} chunk(s) embedded, {result.failed} failed, "
        f"group {result.group} lag {result.lag}; coverage {result.coverage.vectors}/"
        f"{result.coverage.chunks} ({result.coverage.percent:.1f}%)",
        markup=False,
    )
    if swap:
        reembeds.swap(make_engine(settings), settings, result.spec, result.model)
        console.print(f"search now uses {result.model}")


@dlq_app.command("list")
def dlq_list(
    stage: Annotated[str | None, typer.Option(help="Only this stage's DLQ.")] = None,
    newest: Annotated[int, typer.Option(help="How many of the newest errors to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Messages in each DLQ, by error class, and the newest errors."""
    from ragstream.ops import dlq as dlqs

    summaries = dlqs.summarize(resolved(), stage, newest)
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
    from ragstream.ops import dlq as dlqs
    from ragstream.schemas.codec import make_codec

    settings = resolved()
    letter = dlqs.show(settings, message_id)
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
    from ragstream.ops import dlq as dlqs
    from ragstream.schemas.codec import make_codec

    settings = resolved()
    outcomes = dlqs.replay(
        settings,
        make_engine(settings),
        make_codec(settings),
        stage=stage,
        error_class=error_class,
    )
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


@app.command("distill-static")
def distill_static(
    out: Annotated[
        Path | None, typer.Option(help="Where to write it; default: CACHE_DIR/static/...")
    ] = None,
) -> None:
    """Distil all-MiniLM-L6-v2 into a static model (RAGSTREAM_EMBEDDER=static); needs torch."""
    import time

    from ragstream.embedding.static import default_dir, distill

    target = out or default_dir(settings().cache_dir)
    began = time.monotonic()
    distill(target)
    console.print(f"static model in {target} ({time.monotonic() - began:.0f} s)", markup=False)
