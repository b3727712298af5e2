"""``ragstream sync SOURCE``: documents follow a directory or S3 prefix (ragstream/sync.py)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from ragstream.cli.common import console, resolved
from ragstream.cli.errors import UsageError

app = typer.Typer()


@app.command("sync")
def sync_command(
    source: Annotated[str, typer.Argument(help="A directory (recursive) or s3://bucket/prefix.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False,
    no_delete: Annotated[
        bool, typer.Option("--no-delete", help="Keep documents whose file is gone.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per pass.")
    ] = False,
    watch: Annotated[
        float | None, typer.Option("--watch", min=0.1, help="Sync again every SECONDS.")
    ] = None,
) -> None:
    """Submit new and changed files of SOURCE, delete the documents of files gone."""
    from ragstream.db.engine import make_engine
    from ragstream.errors import RagstreamError
    from ragstream.producers.producer import EventProducer
    from ragstream.producers.submit import Submitter
    from ragstream.schemas.codec import make_codec
    from ragstream.sync import open_source, sync

    settings = resolved()
    try:
        directory = open_source(settings, source)
    except RagstreamError as exc:
        raise UsageError(exc.message) from None
    producer = EventProducer(settings)
    submitter = Submitter(settings, make_engine(settings), producer, make_codec(settings))
    try:
        while True:
            result = sync(submitter, directory, dry_run=dry_run, delete_gone=not no_delete)
            if as_json:
                print(json.dumps(result.as_json()), flush=True)
            else:
                counts = ", ".join(f"{n} {k}" for k, n in result.counts.items())
                print(f"{directory.uri}: {counts}" + (" (dry run)" if dry_run else ""), flush=True)
                for key, error in result.errors.items():
                    console.print(f"[red]failed[/red] {key}: {error}")
            if watch is None:
                break
            time.sleep(watch)
    finally:
        producer.close()
    if result.counts["failed"]:
        raise typer.Exit(1)
