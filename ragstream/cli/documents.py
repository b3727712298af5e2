"""Documents in and out: ``ingest``, ``status`` and ``search``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ragstream.cli.common import console, resolved, settings
from ragstream.cli.errors import UsageError
from ragstream.settings import Settings

if TYPE_CHECKING:
    from ragstream.ingest import Item

app = typer.Typer()


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
        ingest_directly(resolved(), paths, wait=wait, timeout=timeout, as_json=as_json)
        return
    from ragstream.client import submit_paths_via_api

    key = api_key or _stored_api_key(settings())
    started = time.monotonic()
    items = submit_paths_via_api(api, key, paths, wait=wait, timeout_s=timeout)
    _report(items, time.monotonic() - started, as_json=as_json)


def _stored_api_key(settings: Settings) -> str:
    from ragstream.api.keys import cli_key, is_operator, key_file, load_keys

    tenants = {k: t for k, t in load_keys(settings).items() if not is_operator(t)}
    found = cli_key(tenants, settings.tenant)
    if found is None:
        raise UsageError(f"no API key: pass --api-key or run `ragstream up` ({key_file(settings)})")
    return found[0]


def ingest_directly(
    settings: Settings, paths: list[Path], *, wait: bool, timeout: float, as_json: bool
) -> None:
    """Submit through the database and Kafka (``ingest`` without ``--api``, ``up --ingest``)."""
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
def status(
    document_id: Annotated[
        str | None, typer.Argument(help="One document: where it is, and why (queued/stalled).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Documents by status, each stage's consumer lag, and each embedding model's coverage."""
    from ragstream.db.engine import make_engine

    if document_id is not None:
        _document_status(document_id, as_json)
        return
    from ragstream.ops.reembed import coverage
    from ragstream.progress import stage_lag, status_counts

    current = resolved()
    engine = make_engine(current)
    documents, lag = status_counts(engine), stage_lag(current)
    models = coverage(engine)
    if as_json:
        print(
            json.dumps(
                {
                    "documents": documents,
                    "lag": lag,
                    "kafka": current.bootstrap,
                    "api_url": current.api_url,
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


def _document_status(document_id: str, as_json: bool) -> None:
    """The job API's view of one document: stage times, queued or stalled, error and DLQ."""
    import uuid

    from ragstream.api.routes.jobs import document_status
    from ragstream.db.engine import make_engine

    try:
        key = uuid.UUID(document_id)
    except ValueError:
        raise UsageError(f"not a document id: {document_id!r}") from None
    engine = make_engine(resolved())
    try:
        view = document_status(engine, key)
    finally:
        engine.dispose()
    if view is None:
        raise UsageError(f"no such document: {document_id}")
    if as_json:
        print(json.dumps(view))
        return
    console_out = Console()
    console_out.print(f"document {view['document_id']}  status {view['status']}")
    stages = Table("stage", "started", "finished", "seconds")
    for name, t in view["stages"].items():
        took = t["duration_s"]
        stages.add_row(
            name,
            t["started_at"] or "-",
            t["finished_at"] or "-",
            "-" if took is None else f"{took:.2f}",
        )
    console_out.print(stages)
    wait = view["wait"]
    if wait:
        line = f"{wait['state']} in {wait['stage']}: {wait['reason']}"
        if wait["position"] is not None:
            line += f"; position {wait['position']}"
        if wait["estimated_start"]:
            line += f"; estimated start {wait['estimated_start']}"
        if wait["state"] == "stalled" and wait["since"]:
            line += f"; since {wait['since']}"
        console_out.print(line)
    error = view["error"]
    if error:
        where = error.get("dlq")
        dlq = f" (DLQ {where['topic']}/{where['partition']}@{where['offset']})" if where else ""
        console_out.print(f"failed in {error['stage']}: {error['class']}: {error['message']}{dlq}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help='What to look for; "quoted phrases" must appear.')],
    k: Annotated[int, typer.Option(help="How many chunks to show.")] = 5,
    mode: Annotated[
        str, typer.Option(help="vector, keyword or hybrid (both, fused by rank).")
    ] = "hybrid",
    vector_weight: Annotated[float, typer.Option(help="Hybrid: the vector ranking's.")] = 1.0,
    keyword_weight: Annotated[float, typer.Option(help="Hybrid: the keyword ranking's.")] = 1.0,
    external_id: Annotated[
        list[str] | None, typer.Option(help="Only documents with this external id (repeatable).")
    ] = None,
    content_type: Annotated[
        list[str] | None, typer.Option(help="Only documents of this type (repeatable).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Only documents synced from under this (repeatable).")
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE, or KEY=PREFIX* for a prefix (repeatable; all must match)."),
    ] = None,
    cursor: Annotated[str | None, typer.Option(help="The next page of an earlier search.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant to search (default TENANT).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model to search (hash, minilm, openai:<name>); default the active one."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON.")] = False,
) -> None:
    """Search the complete documents: the chunks that best match QUERY, best first."""
    from ragstream.db.engine import make_engine
    from ragstream.search import QueryEmbedders
    from ragstream.search import search as find
    from ragstream.textsearch import MODES, Filters

    if mode not in MODES:
        raise typer.BadParameter(f"one of {', '.join(MODES)}", param_hint="--mode")
    metadata: dict[str, Any] = {}
    for pair in meta or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        metadata[key] = {"prefix": value[:-1]} if value.endswith("*") else value
    filters = Filters(
        external_ids=external_id or None,
        content_types=content_type or None,
        sources=source or None,
        metadata=metadata,
    )
    current = resolved()
    engine = make_engine(current)
    embedders = QueryEmbedders(current, engine)
    try:
        embedder = embedders.get(model) if mode != "keyword" else None
        try:
            page = find(
                engine,
                embedder,
                query,
                tenant=tenant or current.tenant,
                k=k,
                mode=mode,
                weights=(vector_weight, keyword_weight),
                filters=filters,
                cursor=cursor,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    finally:
        embedders.close()
    hits = page.hits
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
        where = f"model {embedder.name}" if embedder is not None else "keyword search"
        console.print(f"no complete documents match ({mode}, {where})")
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}")
