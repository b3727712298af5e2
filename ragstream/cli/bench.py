"""``ragstream bench``: the whole pipeline measured in one run (see bench/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from ragstream.cli.common import console, settings
from ragstream.cli.errors import UsageError
from ragstream.devstack import Devstack, resolve_addresses

app = typer.Typer()


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
    precision: Annotated[
        str,
        typer.Option(
            help="minilm on ONNX Runtime: auto (int8), fp32 or int8 (the pipeline's runs)."
        ),
    ] = "auto",
    scaling: Annotated[
        str, typer.Option(help="Workers per stage of the scaling runs, e.g. 1,2 (empty: none).")
    ] = "1,2",
    seed: Annotated[int, typer.Option(help="Corpus seed.")] = 0,
    max_doc_mb: Annotated[float, typer.Option(help="Size of the largest document.")] = 2.0,
    peer: Annotated[bool, typer.Option(help="Run the LlamaIndex peer.")] = True,
    memory_pdf_pages: Annotated[int, typer.Option(help="Pages of the long PDF (0: none).")] = 200,
    memory_text_mb: Annotated[float, typer.Option(help="Size of the big text (0: none).")] = 50.0,
    latency_docs: Annotated[int, typer.Option(help="Single 10 KB documents timed.")] = 10,
    retrieval_scale: Annotated[
        int, typer.Option(help="Chunks the search latency is measured at (0: not measured).")
    ] = 100_000,
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
        raise UsageError(f"--embedder is hash or minilm, not {embedder!r}")
    if precision not in ("auto", "fp32", "int8"):
        raise UsageError(f"--precision is auto, fp32 or int8, not {precision!r}")
    base = settings()
    if base.kafka_bootstrap is None or base.database_url is None:
        Devstack(base).up()
    options = BenchOptions(
        docs=docs,
        embedder="minilm" if embedder == "minilm" else "hash",
        workers_per_stage=workers_per_stage,
        embed_workers=embed_workers,
        embed_threads=embed_threads,
        embed_precision=cast(Literal["auto", "fp32", "int8"], precision),
        scaling=tuple(int(k) for k in scaling.split(",") if k.strip()),
        seed=seed,
        max_doc_mb=max_doc_mb,
        peer=peer,
        memory_pdf_pages=memory_pdf_pages,
        memory_text_mb=memory_text_mb,
        latency_docs=latency_docs,
        retrieval_scale=retrieval_scale,
        keep=keep,
    )
    report = run_bench(resolve_addresses(base), options, lambda m: console.print(m, markup=False))
    table = markdown(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "bench.md").write_text(table)
    print(json.dumps(report, indent=2) if as_json else table)
