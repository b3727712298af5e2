"""The retrieval set through the real search: each mode, each embedder, and its latency.

:mod:`ragstream.benchmark.retrieval` scores embedders in memory; this scores
what a user gets from ``/v1/search``: the haystack is written to a fresh
database as complete documents (one per chunk, with the text-search
configuration of its language, as the chunk stage records it), every
embedder's vectors beside each other with their own HNSW index, and every
query goes through :func:`ragstream.search.search` in the ``vector``,
``keyword`` and ``hybrid`` modes. Latency is then measured at ``scale`` chunks
(the haystack copied, each copy's text and vector made distinct), where the
index walks are what they would be in a real deployment of that size.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, text

from ragstream import textsearch
from ragstream.benchmark import retrieval
from ragstream.benchmark.runs import percentiles
from ragstream.db import vectors
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.embedding import Embedder, make_embedder
from ragstream.search import search
from ragstream.settings import Settings
from ragstream.state import DocumentStatus

TENANT = "bench-retrieval"
_NAMESPACE = uuid.UUID("6d3f0e52-6a4b-4f0e-9a57-1b1f3c5b2a10")
_LINEAGE = {
    "chunker_version": "bench",
    "chunker_config_hash": "bench",
    "parser": "bench",
    "parser_version": "bench",
}


def _chunk_id(i: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"chunk:{i}")


def _load_haystack(conn: Connection, haystack: Sequence[str]) -> None:
    """One complete document per chunk, its language's text-search configuration recorded."""
    documents, chunks = [], []
    now = datetime.now(UTC)
    for i, chunk in enumerate(haystack):
        document_id = uuid.uuid5(_NAMESPACE, f"document:{i}")
        config = textsearch.detect_config(chunk)
        documents.append(
            {
                "id": document_id,
                "tenant": TENANT,
                "sha256": hashlib.sha256(f"{i}\x1f{chunk}".encode()).hexdigest(),
                "filename": f"chunk-{i:05d}.txt",
                "content_type": "text/plain",
                "size_bytes": len(chunk.encode()),
                "status": DocumentStatus.COMPLETE.value,
                "text_search_config": config,
                "uploaded_at": now,
            }
        )
        chunks.append(
            {
                "id": _chunk_id(i),
                "document_id": document_id,
                "job_id": document_id,
                "chunk_index": 0,
                "text": chunk,
                "token_count": len(chunk.split()),
                "pages": [],
                "heading_path": [],
                "text_search_config": config,
                **_LINEAGE,
            }
        )
    for start in range(0, len(documents), 500):
        conn.execute(insert(Document), documents[start : start + 500])
        conn.execute(insert(ChunkBuffer), chunks[start : start + 500])


def _load_vectors(conn: Connection, embedder: Embedder, haystack: Sequence[str]) -> float:
    """``embedder``'s vectors of the haystack; the seconds the embedding took."""
    started = time.perf_counter()
    matrix = retrieval.embed_all(embedder.embed, haystack)
    seconds = time.perf_counter() - started
    rows = [
        {
            "id": uuid.uuid5(_NAMESPACE, f"{embedder.name}:{i}"),
            "chunk_id": _chunk_id(i),
            "document_id": uuid.uuid5(_NAMESPACE, f"document:{i}"),
            "job_id": uuid.uuid5(_NAMESPACE, f"document:{i}"),
            "model": embedder.name,
            "model_version": embedder.version,
            "dimensions": embedder.dimensions,
            "text_sha256": hashlib.sha256(chunk.encode()).hexdigest(),
            "embedding": [float(x) for x in matrix[i]],
            **_LINEAGE,
        }
        for i, chunk in enumerate(haystack)
    ]
    for start in range(0, len(rows), 500):
        conn.execute(insert(VectorBuffer), rows[start : start + 500])
    vectors.ensure_index(conn, embedder.name, embedder.dimensions)
    # As autovacuum would soon: without statistics the planner may sort the whole table.
    conn.execute(text("ANALYZE document_chunk_buffer"))
    conn.execute(text("ANALYZE document_vector_buffer"))
    conn.execute(text("ANALYZE documents"))
    return seconds


def _rankings(
    engine: Engine,
    embedder: Embedder,
    queries: Iterable[retrieval.Query],
    mode: textsearch.Mode,
    index_of: dict[uuid.UUID, int],
) -> tuple[list[list[int]], list[float]]:
    """Each query's ranked haystack indexes through the real search, and its seconds."""
    rankings: list[list[int]] = []
    seconds: list[float] = []
    for query in queries:
        started = time.perf_counter()
        page = search(engine, embedder, query.text, tenant=TENANT, k=retrieval.TOP, mode=mode)
        seconds.append(time.perf_counter() - started)
        rankings.append([index_of[h.chunk_id] for h in page.hits if h.chunk_id in index_of])
    return rankings, seconds


def measure(
    settings: Settings,
    variants: dict[str, Settings],
    texts: Sequence[str],
    *,
    per_kind: int = 50,
    max_chunks: int = 2000,
    scale: int = 100_000,
    latency_queries: int = 60,
) -> dict[str, Any]:
    """Scores per embedder, query kind and mode, and latencies at ``scale`` chunks.

    ``settings`` points at an empty, migrated database of its own (it is filled).
    """
    haystack = [*texts[:max_chunks], *retrieval.fact_texts()]
    queries = retrieval.make_queries(haystack, per_kind=per_kind)
    index_of = {_chunk_id(i): i for i in range(len(haystack))}
    engine = make_engine(settings)
    embedders = {name: make_embedder(s) for name, s in variants.items()}
    scores: dict[str, Any] = {}
    try:
        with engine.begin() as conn:
            _load_haystack(conn, haystack)
        for name, embedder in embedders.items():
            with engine.begin() as conn:
                embed_s = _load_vectors(conn, embedder, haystack)
            by_mode: dict[str, Any] = {"chunks_per_s": round(len(haystack) / embed_s, 1)}
            for mode in textsearch.MODES:
                rankings, seconds = _rankings(engine, embedder, queries, mode, index_of)
                by_mode[mode] = {
                    **retrieval.score(queries, rankings),
                    "latency_ms": _ms(percentiles(seconds)),
                }
            scores[name] = by_mode
        latency = _latency_at_scale(
            engine, next(iter(embedders.values())), haystack, queries, scale, latency_queries
        )
    finally:
        for embedder in embedders.values():
            embedder.close()
        engine.dispose()
    return {
        "chunks": len(haystack),
        "queries": {kind: sum(1 for q in queries if q.kind == kind) for kind in retrieval.KINDS},
        "by_embedder": scores,
        "targets": targets(scores),
        "at_scale": latency,
    }


def targets(scores: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars: hybrid known-item recall@1 >= 0.99 per embedder, and hybrid at
    least as good as the better single mode on every kind and measure."""
    known_item: dict[str, float] = {}
    not_worse: dict[str, list[str]] = {}
    for name, by_mode in scores.items():
        known_item[name] = by_mode["hybrid"].get("known_item", {}).get("recall_at_1", 0.0)
        worse = []
        for kind in retrieval.KINDS:
            hybrid = by_mode["hybrid"].get(kind)
            if hybrid is None:
                continue
            for measure_name in ("recall_at_1", "recall_at_10", "mrr"):
                best = max(by_mode[m][kind][measure_name] for m in ("vector", "keyword"))
                if hybrid[measure_name] < best:
                    worse.append(f"{kind}.{measure_name}: {hybrid[measure_name]} < {best}")
        not_worse[name] = worse
    return {
        "known_item_recall_at_1_hybrid": known_item,
        "known_item_target_met": all(v >= 0.99 for v in known_item.values()),
        "hybrid_below_best_single_mode": not_worse,
        "hybrid_target_met": not any(not_worse.values()),
    }


def _latency_at_scale(
    engine: Engine,
    embedder: Embedder,
    haystack: Sequence[str],
    queries: Sequence[retrieval.Query],
    scale: int,
    latency_queries: int,
) -> dict[str, Any] | None:
    """p50/p95 per mode once the tenant holds ``scale`` chunks of ``embedder``'s model.

    The haystack is copied in SQL (each copy's text numbered, its vector jittered so
    the HNSW graph is not full of duplicates); the model's index is dropped for the
    load and built once after it, as for any backfill.
    """
    copies = max(0, -(-scale // len(haystack)) - 1)
    if copies == 0:
        return None
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
        index = vectors.index_name(embedder.name, embedder.dimensions)
        conn.execute(text(f'DROP INDEX IF EXISTS "{index}"'))
        params = {"copies": copies, "model": embedder.name, "tenant": TENANT}
        conn.execute(
            text(
                "INSERT INTO documents (id, tenant, sha256, filename, content_type, size_bytes,"
                " status, text_search_config, uploaded_at)"
                " SELECT gen_random_uuid(), d.tenant, md5(d.sha256 || g.n) || md5(g.n::text),"
                " d.filename, d.content_type, d.size_bytes, d.status, d.text_search_config, now()"
                " FROM documents d, generate_series(1, :copies) g(n) WHERE d.tenant = :tenant"
            ),
            params,
        )
        conn.execute(
            text(
                "CREATE TEMP TABLE copy_of ON COMMIT DROP AS"
                " SELECT c.id AS source, d.id AS copy, g.n"
                " FROM document_chunk_buffer c"
                " JOIN documents o ON o.id = c.document_id AND o.tenant = :tenant"
                " CROSS JOIN generate_series(1, :copies) g(n)"
                " JOIN documents d ON d.sha256 = md5(o.sha256 || g.n) || md5(g.n::text)"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO document_chunk_buffer (id, document_id, job_id, chunk_index, text,"
                " token_count, pages, heading_path, chunker_version, chunker_config_hash,"
                " parser, parser_version, text_search_config)"
                " SELECT gen_random_uuid(), m.copy, m.copy, 0, c.text || ' (' || m.n || ')',"
                " c.token_count, c.pages, c.heading_path, c.chunker_version,"
                " c.chunker_config_hash, c.parser, c.parser_version, c.text_search_config"
                " FROM copy_of m JOIN document_chunk_buffer c ON c.id = m.source"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO document_vector_buffer (id, chunk_id, document_id, job_id, model,"
                " model_version, dimensions, text_sha256, chunker_version, chunker_config_hash,"
                " parser, parser_version, embedding)"
                " SELECT gen_random_uuid(), nc.id, m.copy, m.copy, v.model, v.model_version,"
                " v.dimensions, v.text_sha256, v.chunker_version, v.chunker_config_hash,"
                " v.parser, v.parser_version,"
                " (SELECT array_agg(e + (random() - 0.5) * 0.02 ORDER BY i)"
                "  FROM unnest(v.embedding::real[]) WITH ORDINALITY u(e, i))::vector"
                " FROM copy_of m"
                " JOIN document_vector_buffer v ON v.chunk_id = m.source AND v.model = :model"
                " JOIN document_chunk_buffer nc ON nc.document_id = m.copy"
            ),
            params,
        )
        vectors.ensure_index(conn, embedder.name, embedder.dimensions)
        conn.execute(text("ANALYZE documents"))
        conn.execute(text("ANALYZE document_chunk_buffer"))
        conn.execute(text("ANALYZE document_vector_buffer"))
        total = conn.execute(
            text(
                "SELECT count(*) FROM document_chunk_buffer c JOIN documents d"
                " ON d.id = c.document_id WHERE d.tenant = :tenant"
            ),
            params,
        ).scalar_one()
    load_s = time.perf_counter() - started
    sample = list(queries)[:latency_queries]
    by_mode: dict[str, Any] = {}
    for mode in textsearch.MODES:
        _rankings(engine, embedder, sample[:5], mode, {})  # warm the caches
        _, seconds = _rankings(engine, embedder, sample, mode, {})
        by_mode[mode] = _ms(percentiles(seconds))
    return {
        "chunks": int(total),
        "embedder": embedder.name,
        "queries": len(sample),
        "load_and_index_s": round(load_s, 1),
        "latency_ms": by_mode,
    }


def _ms(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {key: None if v is None else round(v * 1000, 1) for key, v in figures.items()}
