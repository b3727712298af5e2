"""``ragstream bench``: the pipeline, its limits and a peer, measured side by side in one run.

On a shared, noisy machine absolute times say little; ratios measured
minutes apart on the same inputs say much more. So one run does, in order:

1. the corpus (deterministic), written to a directory the peer reads too;
2. the limits, each part alone: parsers, chunker, model (batch sizes swept),
   broker (raw produce and consume of the pipeline's own messages);
3. the pipeline, with real ``ragstream worker`` processes, at 1, 2, ... workers
   per stage, each run on a fresh database (cold embedding cache) and fresh
   topics; the main run then re-ingests the corpus with 10% of it edited and
   probes the latency of single 10 KB documents on the idle pipeline;
4. the peer (LlamaIndex), with its defaults and at our chunk size;
5. memory: a long PDF and a large text file through the pipeline, with the
   parse worker's peak resident memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from ragstream.benchmark import corpus, limits, peer, retrieval, search_quality
from ragstream.benchmark.report import build_report
from ragstream.benchmark.runs import Ingest, Session, metrics_delta, percentiles, stage_figures
from ragstream.benchmark.stack import (
    BenchDatabases,
    CpuMeter,
    StageMetrics,
    Workers,
    database_now,
    stack_processes,
)
from ragstream.embedding.static import default_dir
from ragstream.settings import EmbedderName, Settings
from ragstream.state import DocumentStatus

Log = Callable[[str], None]
FANOUT_REPEATS = 3
MAX_AUTO_EMBED_WORKERS = 4  # each holds its own copy of the model


@dataclass(frozen=True)
class BenchOptions:
    docs: int = 30
    embedder: EmbedderName = "minilm"
    workers_per_stage: int = 1
    embed_workers: int = 0  # 0: one per core for a local model, else as the other stages
    embed_threads: int = 0  # 0: the cores shared out among the embed workers
    embed_precision: Literal["auto", "fp32", "int8"] = "auto"  # minilm on ONNX Runtime
    scaling: tuple[int, ...] = (1, 2)
    seed: int = 0
    max_doc_mb: float = 2.0
    reingest_share: float = 0.1
    latency_docs: int = 10
    retrieval_scale: int = 100_000  # chunks the search latency is measured at (0: not)
    peer: bool = True
    memory_pdf_pages: int = 200
    memory_text_mb: float = 50.0
    memory_timeout_s: float = 300.0
    timeout_s: float = 3600.0
    keep: Path | None = None


@dataclass
class Phases:
    """What each phase measured, gathered for the report."""

    options: BenchOptions
    load: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    corpus: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    main: dict[str, Any] = field(default_factory=dict)
    peer: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    fanout: dict[str, Any] = field(default_factory=dict)
    embed_compare: dict[str, Any] = field(default_factory=dict)
    runtimes: dict[str, Any] = field(default_factory=dict)
    retrieval: dict[str, Any] = field(default_factory=dict)

    def note_load(self, phase: str) -> None:
        self.load.append((phase, os.getloadavg()))


def run_bench(settings: Settings, options: BenchOptions, sink: Log = print) -> dict[str, Any]:
    """Run every phase on the stack ``settings`` points at; the report as a dict."""
    clock = time.monotonic()

    def timed(message: str) -> None:
        sink(f"[{time.monotonic() - clock:7.1f}s] {message}")

    log = timed
    base = settings.model_copy(
        update={
            "embedder": options.embedder,
            "embed_threads": options.embed_threads,
            "embed_precision": options.embed_precision,
        }
    )
    work = options.keep or Path(tempfile.mkdtemp(prefix="ragstream-bench-"))
    phases = Phases(options)
    phases.note_load("start")
    databases = BenchDatabases(base)
    try:
        docs = corpus.make_corpus(options.docs, seed=options.seed, max_doc_mb=options.max_doc_mb)
        corpus_dir = work / "corpus"
        corpus.write(docs, corpus_dir)
        log(f"corpus: {len(docs)} documents, {sum(d.size_bytes for d in docs) / 1e6:.2f} MB")
        prepared = _limits(base, docs, phases, log)
        batch_size = int(phases.limits["model"]["best_batch_size"])
        for k in sorted({*options.scaling, options.workers_per_stage}):
            run = _pipeline(
                databases,
                base,
                docs,
                prepared,
                k,
                _embed_workers(options, k),
                batch_size,
                work,
                phases,
                log,
                label=f"k{k}",
            )
            phases.runs[k] = run
        main_embed = phases.main["run"]["embed_workers"]
        if options.embedder == "minilm" and main_embed > 1:
            log("pipeline: the same with 1 embed worker of torch's default threads, to compare")
            single = _pipeline(
                databases,
                base.model_copy(update={"embed_threads": 0}),
                docs,
                prepared,
                options.workers_per_stage,
                1,
                batch_size,
                work,
                phases,
                log,
                label="embed1",
            )
            phases.embed_compare = {
                "one_worker_default_threads_chunks_per_s": single["chunks_per_s"],
                "configured_chunks_per_s": phases.main["run"]["chunks_per_s"],
                "configured": f"{main_embed} x {options.embed_threads or 'shared cores'}",
            }
        _model_again(base, prepared, phases, log)
        if options.embedder == "minilm":
            _runtimes(base, prepared, phases, log)
        _retrieval(base, prepared, phases, log)
        _search_quality(databases, base, prepared, options, phases, log)
        if options.peer:
            _peer(base, corpus_dir, phases, log)
        if _wants_memory(options) and not phases.memory:
            _memory(databases, work, phases, log)
        if options.memory_pdf_pages > 0:
            _fanout(databases, work, phases, log)
        phases.note_load("end")
    finally:
        databases.close()
        if options.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return build_report(phases, batch_size)


def _limits(base: Settings, docs: list[corpus.Doc], phases: Phases, log: Log) -> limits.Prepared:
    log("limits: parsers and chunker alone")
    prepared = limits.prepare(base, docs)
    texts = prepared.texts
    size = sum(d.size_bytes for d in docs)
    phases.corpus = {
        "documents": len(docs),
        "seed": phases.options.seed,
        "megabytes": round(size / 1e6, 3),
        "min_kb": round(min(d.size_bytes for d in docs) / 1024, 1),
        "max_kb": round(max(d.size_bytes for d in docs) / 1024, 1),
        "kinds": {k: sum(1 for d in docs if d.kind == k) for k in corpus.KINDS},
        "chunks": len(texts),
        "distinct_chunks": len(set(texts)),
    }
    phases.limits["parse"] = {
        "seconds": prepared.parse_s,
        "documents_per_s": len(docs) / prepared.parse_s,
        "mb_per_s": size / 1e6 / prepared.parse_s,
        "chunks_per_s": len(texts) / prepared.parse_s,
    }
    phases.limits["chunk"] = {
        "seconds": prepared.chunk_s,
        "chunks_per_s": len(texts) / prepared.chunk_s,
    }
    log("limits: the broker, raw produce -> consume of the pipeline's messages")
    messages = limits.pipeline_messages(base, docs, prepared)
    transport = limits.transport_limit(base, messages)
    transport["chunks_per_s"] = transport["msgs_per_s"] * len(texts) / max(len(messages), 1)
    phases.limits["transport"] = transport
    log(f"  {transport['msgs_per_s']:.0f} msgs/s, {transport['mb_per_s']:.1f} MB/s")
    log(f"limits: the model ({base.embedder}) alone")
    phases.limits["model"] = limits.model_limit(base, texts, log=log)
    phases.note_load("limits")
    return prepared


def _pipeline(
    databases: BenchDatabases,
    base: Settings,
    docs: list[corpus.Doc],
    prepared: limits.Prepared,
    per_stage: int,
    embed_workers: int,
    batch_size: int,
    work: Path,
    phases: Phases,
    log: Log,
    *,
    label: str,
) -> dict[str, Any]:
    """One run of the corpus on fresh workers; the main one also re-ingests and probes."""
    options = phases.options
    main = per_stage == options.workers_per_stage and not phases.main
    settings = databases.fresh(label, embed_batch_size=batch_size, embed_threads=base.embed_threads)
    log(
        f"pipeline: {per_stage} worker(s) per stage, {embed_workers} embed worker(s) "
        f"of {settings.embed_threads or 'shared'} thread(s), embed batch {batch_size}"
    )
    workers = Workers(settings, per_stage, work / f"workers-{label}", {"embed": embed_workers})
    session = Session(settings)
    try:
        with workers.running():
            before = workers.metrics()
            with CpuMeter(partial(stack_processes, settings, workers)) as cpu:
                ingest, _ = session.ingest(docs, timeout_s=options.timeout_s)
            metrics = metrics_delta(workers.metrics(), before)
            log(
                f"  {ingest.complete}/{ingest.documents} complete, {ingest.chunks} chunks "
                f"in {ingest.wall_s:.1f}s: {ingest.chunks_per_s:.1f} chunks/s"
            )
            run = {
                "embed_workers": embed_workers,
                "wall_s": ingest.wall_s,
                "documents": ingest.documents,
                "complete": ingest.complete,
                "failed": ingest.failed,
                "chunks": ingest.chunks,
                "documents_per_s": ingest.documents_per_s,
                "chunks_per_s": ingest.chunks_per_s,
                "latency_s": percentiles(ingest.latencies_s),
                "stages": stage_figures(metrics, ingest.wall_s),
                "embedded_texts": int(metrics.get("embed", StageMetrics()).embedded_texts),
                "cpu_core_s": cpu.core_s,
                "cpu_capacity_core_s": cpu.capacity_core_s,
                "errors": ingest.errors,
            }
            phases.note_load(f"pipeline-{label}")
            if main:
                phases.main = {
                    "run": run,
                    "reingest": _reingest(session, workers, docs, prepared, ingest, options, log),
                    "latency_10kb_s": _latency(session, options, log),
                    "truncated_chunks": session.truncated_chunks(),
                }
                phases.main["peak_rss_mb"] = workers.peak_rss_mb()
                phases.main["parse_sandbox_peak_rss_mb"] = workers.sandbox_peak_mb
                if _wants_memory(options) and settings.embedder == "hash":
                    _memory_on(session, workers, phases, log)  # the same workers will do
    finally:
        session.close()
    return run


def _embed_workers(options: BenchOptions, per_stage: int) -> int:
    """As asked; else, for a local model, at least one per core (each gets a core's share)."""
    if options.embed_workers:
        return options.embed_workers
    if options.embedder == "minilm":
        return max(per_stage, min(os.cpu_count() or 1, MAX_AUTO_EMBED_WORKERS))
    return per_stage


def _model_again(base: Settings, prepared: limits.Prepared, phases: Phases, log: Log) -> None:
    """The model limit measured once more after the pipeline runs: the higher one counts.

    On a shared machine the load changes from minute to minute; taking the
    better of two measurements on either side of the pipeline keeps a quiet
    moment during the pipeline from passing for efficiency.
    """
    model = phases.limits["model"]
    again = limits.model_rate(
        base, prepared.texts, int(model["best_batch_size"]), model.get("best_threads")
    )
    log(f"limits: the model alone again, after the pipeline: {again:.1f} chunks/s")
    model["chunks_per_s_measured"] = [model["chunks_per_s"], again]
    model["chunks_per_s"] = max(model["chunks_per_s"], again)


def _runtimes(base: Settings, prepared: limits.Prepared, phases: Phases, log: Log) -> None:
    """torch fp32 (where installed), ONNX fp32 and ONNX int8 alone, on the same chunks."""
    model = phases.limits["model"]
    sample = prepared.texts[: max(64, int(model.get("sample_chunks") or 128))]
    log(f"limits: each local runtime alone on {len(sample)} chunks (torch where installed)")
    rates = limits.runtime_limits(base, sample, int(model["best_batch_size"]))
    for name, rate in rates.items():
        log(f"  {name}: {'-' if rate is None else f'{rate:.1f} chunks/s'}")
    phases.runtimes = {"pipeline_runtime": limits.runtime(base), "chunks_per_s": rates}
    phases.note_load("runtimes")


def _retrieval(base: Settings, prepared: limits.Prepared, phases: Phases, log: Log) -> None:
    """The retrieval set ranked in memory by each embedder: what a faster model costs."""
    variants = {"hash": base.model_copy(update={"embedder": "hash"})}
    if base.embedder == "minilm":
        for name in ("onnx_fp32", "onnx_int8"):
            variants[name] = base.model_copy(update=limits.RUNTIMES[name])
        static = base.static_model_dir or default_dir(base.cache_dir)
        if (static / "model.safetensors").is_file():  # made by `ragstream distill-static`
            variants["static"] = base.model_copy(
                update={"embedder": "static", "static_model_dir": static}
            )
        else:
            log(f"retrieval: no static model in {static} (ragstream distill-static): left out")
    log(f"retrieval: known-item, reordered and question queries, {', '.join(variants)}")
    phases.retrieval = retrieval.quality(variants, prepared.texts)
    for name, scores in phases.retrieval["by_model"].items():
        summary = ", ".join(
            f"{kind} r@1 {s['recall_at_1']:.2f} r@10 {s['recall_at_10']:.2f}"
            for kind, s in scores.items()
            if isinstance(s, dict)
        )
        log(f"  {name}: {summary}")
    phases.note_load("retrieval")


def _search_quality(
    databases: BenchDatabases,
    base: Settings,
    prepared: limits.Prepared,
    options: BenchOptions,
    phases: Phases,
    log: Log,
) -> None:
    """The retrieval set through the real search, per mode and embedder, and its latency."""
    names = ["hash", *(["minilm"] if base.embedder == "minilm" else [])]
    variants = {
        n: base.model_copy(update={"embedder": n, "embed_precision": "fp32"}) for n in names
    }
    log(f"retrieval: vector, keyword and hybrid search, {', '.join(names)}")
    found = search_quality.measure(
        databases.fresh("retrieval"), variants, prepared.texts, scale=options.retrieval_scale
    )
    for name, by_mode in found["by_embedder"].items():
        for mode in ("vector", "keyword", "hybrid"):
            summary = ", ".join(
                f"{kind} r@1 {s['recall_at_1']:.2f} r@10 {s['recall_at_10']:.2f}"
                for kind, s in by_mode[mode].items()
                if kind != "latency_ms"
            )
            log(f"  {name} {mode}: {summary}")
    scale = found["at_scale"]
    if scale:
        log(f"  at {scale['chunks']} chunks, ms: {scale['latency_ms']}")
    phases.retrieval["search"] = found
    phases.note_load("search")


def _reingest(
    session: Session,
    workers: Workers,
    docs: list[corpus.Doc],
    prepared: limits.Prepared,
    first: Ingest,
    options: BenchOptions,
    log: Log,
) -> dict[str, Any]:
    """The whole corpus again with a share of it edited: only what changed is new work.

    Unchanged documents are recognised by their content at submission; the
    edited ones go through, and of their chunks only the texts never embedded
    before reach the model.
    """
    edited = corpus.edit(
        docs, seed=options.seed, max_doc_mb=options.max_doc_mb, share=options.reingest_share
    )
    changed = [new for old, new in zip(docs, edited, strict=True) if new.data != old.data]
    known = set(prepared.texts)
    expected = {t for doc in limits.prepare(session.settings, changed).chunks for t in doc} - known
    log(f"re-ingest: {len(edited)} documents, {len(changed)} edited")
    before = workers.metrics()
    started = database_now(session.settings)
    ids = session.submit(edited)
    new_ids = _ids_of(changed, ids, edited)
    states = session.wait(new_ids, timeout_s=options.timeout_s)
    again = session.measure(new_ids, started, states)
    delta = metrics_delta(workers.metrics(), before).get("embed", StageMetrics())
    speedup = first.wall_s / again.wall_s if again.wall_s > 0 else None
    log(
        f"  {again.wall_s:.2f}s against {first.wall_s:.2f}s first: x{speedup or 0:.1f}; "
        f"{int(delta.embedded_texts)} texts embedded, {len(expected)} changed"
    )
    return {
        "documents": len(edited),
        "edited_documents": len(changed),
        "complete": again.complete,
        "wall_s": again.wall_s,
        "first_ingest_wall_s": first.wall_s,
        "speedup": speedup,
        "chunks_of_edited_documents": again.chunks,
        "changed_chunks": len(expected),
        "embedded_texts": int(delta.embedded_texts),
        "cache_hits": int(delta.cache_hits),
        "only_changed_embedded": int(delta.embedded_texts) == len(expected),
        "errors": again.errors,
    }


def _ids_of(
    changed: list[corpus.Doc], ids: list[uuid.UUID], docs: list[corpus.Doc]
) -> list[uuid.UUID]:
    """The ids of the ``changed`` documents among those submitted."""
    names = {d.name for d in changed}
    return [i for i, d in zip(ids, docs, strict=True) if d.name in names]


def _latency(session: Session, options: BenchOptions, log: Log) -> dict[str, Any]:
    docs = corpus.latency_docs(options.latency_docs, seed=options.seed)
    latencies, steps = session.latency_probe(docs, timeout_s=120)
    figures = percentiles(latencies)
    log(f"latency of single 10 KB documents on the idle pipeline: {figures}")
    return {
        "documents": len(docs),
        "size_kb": round(sum(d.size_bytes for d in docs) / max(len(docs), 1) / 1024, 1),
        **figures,
        "median_step_s": steps,
    }


def _peer(base: Settings, corpus_dir: Path, phases: Phases, log: Log) -> None:
    missing = peer.available()
    if missing is not None:
        log(f"peer: skipped, {missing}")
        phases.peer = {"skipped": missing}
        return
    log("peer: LlamaIndex IngestionPipeline with its defaults")
    defaults = peer.run_peer(base, corpus_dir)
    log(f"  {defaults['chunks']} chunks in {defaults['seconds']:.1f}s")
    log("peer: LlamaIndex at our chunk size")
    same = peer.run_peer(
        base,
        corpus_dir,
        chunk_size=base.chunk_target_tokens,
        chunk_overlap=base.chunk_overlap_tokens,
    )
    log(f"  {same['chunks']} chunks in {same['seconds']:.1f}s")
    phases.peer = {"defaults": defaults, "same_chunk_size": same}
    phases.note_load("peer")


def _wants_memory(options: BenchOptions) -> bool:
    return options.memory_text_mb > 0 or options.memory_pdf_pages > 0


def _fanout(databases: BenchDatabases, work: Path, phases: Phases, log: Log) -> None:
    """The long PDF parsed with 1 parse worker, then with 2: parts spread over both.

    Only the parse stage changes; each count parses ``FANOUT_REPEATS``
    different PDFs of the same length, one at a time, and the median counts.
    """
    options = phases.options
    docs = [
        corpus.big_pdf(options.memory_pdf_pages, seed=options.seed + rep)
        for rep in range(FANOUT_REPEATS)
    ]
    seconds: dict[int, list[float | None]] = {}
    for k in (1, 2):
        settings = databases.fresh(f"fanout{k}", embedder="hash")
        workers = Workers(settings, 1, work / f"workers-fanout{k}", stage_workers={"parse": k})
        session = Session(settings)
        seconds[k] = []
        try:
            with workers.running():
                for doc in docs:
                    (document_id,) = session.submit([doc])
                    states = session.wait(
                        [document_id],
                        timeout_s=options.memory_timeout_s,
                        until=DocumentStatus.PARSED,
                        poll_s=0.1,
                    )
                    state = states.get(document_id)
                    ok = state is not None and state.status != DocumentStatus.FAILED
                    took = session.seconds_between(
                        document_id, DocumentStatus.UPLOADED, DocumentStatus.PARSED
                    )
                    seconds[k].append(round(took, 3) if ok and took is not None else None)
                log(f"fan-out: {docs[0].name}, {k} parse worker(s), upload to parsed: {seconds[k]}")
        finally:
            session.close()
    median = {k: _median(v) for k, v in seconds.items()}
    one, two = median.get(1), median.get(2)
    phases.fanout = {
        "name": docs[0].name,
        "pages": options.memory_pdf_pages,
        "part_pages": databases.base.pdf_part_pages,
        "parse_seconds": {str(k): v for k, v in median.items()},
        "parse_seconds_each": {str(k): v for k, v in seconds.items()},
        "speedup": round(one / two, 2) if one and two else None,
    }
    phases.note_load("fanout")


def _median(values: list[float | None]) -> float | None:
    """The median, or None if any run failed: a failure is not a fast run."""
    if not values or any(v is None for v in values):
        return None
    ordered = sorted(v for v in values if v is not None)
    return ordered[len(ordered) // 2]


def _memory(databases: BenchDatabases, work: Path, phases: Phases, log: Log) -> None:
    """Large inputs need only the hash embedder: the memory phase is about parsing."""
    settings = databases.fresh("memory", embedder="hash")
    workers = Workers(settings, 1, work / "workers-memory")
    session = Session(settings)
    try:
        with workers.running():
            _memory_on(session, workers, phases, log)
    finally:
        session.close()


def _memory_on(session: Session, workers: Workers, phases: Phases, log: Log) -> None:
    """A long PDF, then a large text, each followed to its end; parse peak RSS after each."""
    options = phases.options
    big = []
    if options.memory_pdf_pages > 0:
        big.append(("pdf", corpus.big_pdf(options.memory_pdf_pages, seed=options.seed)))
    if options.memory_text_mb > 0:
        big.append(("text", corpus.big_text(options.memory_text_mb, seed=options.seed)))
    results: dict[str, Any] = {}
    timeout = options.memory_timeout_s
    for label, doc in big:
        log(f"memory: {doc.name} ({doc.size_bytes / 1e6:.1f} MB)")
        started = database_now(session.settings)
        (document_id,) = session.submit([doc])
        parsed = session.wait([document_id], timeout_s=timeout, until=DocumentStatus.PARSED)
        parse_peak = workers.peak_rss_mb().get("parse")
        states = session.wait([document_id], timeout_s=timeout)
        result = session.measure([document_id], started, states)
        state = states.get(document_id) or parsed.get(document_id)
        results[label] = {
            "name": doc.name,
            "megabytes": round(doc.size_bytes / 1e6, 2),
            "status": state.status if state else "unknown",
            "error": state.error if state else None,
            "chunks": result.chunks,
            "seconds": result.wall_s if result.complete else None,
            "parse_peak_rss_mb": parse_peak,
        }
        log(f"  {results[label]}")
    results["peak_rss_mb"] = workers.peak_rss_mb()
    results["parse_sandbox_peak_rss_mb"] = workers.sandbox_peak_mb
    phases.memory = results
    phases.note_load("memory")
