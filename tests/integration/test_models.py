"""Models of 384, 768 and 1536 dimensions side by side, and the active model in the database.

A database built with ``hash-384`` gets ``hash-768`` built beside it, then
``hash-1536`` built and swapped in; documents arrive before, during and after
the build, through live workers configured with a model the database does not
serve (``hash-512``): they follow the database, so every complete document
is found with the new model and no ``hash-512`` vector is ever written.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from ragstream.cli import app
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.embedding import HashEmbedder, registry
from ragstream.errors import NoVectors
from ragstream.ops import reembed
from ragstream.search import QueryEmbedders, search
from ragstream.settings import Settings
from ragstream.textsearch import Filters
from tests import corpus
from tests.integration.test_api_server import serve
from tests.integration.test_replay_reembed import _through_pipeline
from tests.pipeline import settings_env

pytestmark = pytest.mark.integration


def test_three_dimensions_side_by_side_and_a_swap_followed_by_live_workers(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"tenant": "alpha"})  # a tenant the API test keys know
    _through_pipeline(settings, corpus.mixed(2, seed=71))  # a fresh database: hash-384 active
    engine = make_engine(settings)
    assert reembed.reembed(settings, "hash-768", idle_timeout_s=3).coverage.complete
    assert reembed.reembed(settings, "hash-1536", idle_timeout_s=3).coverage.complete

    # Workers configured with a model nobody serves follow the database instead.
    stray = settings.model_copy(update={"hash_dimensions": 512})
    _through_pipeline(stray, corpus.mixed(4, seed=71)[2:])  # during the build of hash-1536
    result = CliRunner().invoke(
        app,
        ["reembed", "--model", "hash-1536", "--swap", "--idle-timeout", "3"],
        env=settings_env(settings),
    )
    assert result.exit_code == 0, result.output
    _through_pipeline(stray, corpus.mixed(6, seed=71)[4:])  # after the swap, same processes' config

    with engine.connect() as conn:
        dims = dict(
            conn.execute(
                select(VectorBuffer.model, func.min(VectorBuffer.dimensions))
                .group_by(VectorBuffer.model)
                .having(func.min(VectorBuffer.dimensions) == func.max(VectorBuffer.dimensions))
            ).all()
        )
        actual = dict(
            conn.execute(
                text(
                    "SELECT model, min(vector_dims(embedding)) FROM document_vector_buffer "
                    "GROUP BY model"
                )
            ).all()
        )
        states = dict(conn.execute(text("SELECT model, state FROM embedding_models")).all())
        indexes = (
            conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'ix_vectors_%'")
            )
            .scalars()
            .all()
        )
        statuses = dict(
            conn.execute(select(Document.status, func.count()).group_by(Document.status)).all()
        )
        documents = list(conn.execute(select(Document.id)).scalars())
        chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
        by_model = dict(
            conn.execute(
                select(VectorBuffer.model, func.count()).group_by(VectorBuffer.model)
            ).all()
        )
    assert dims == actual == {"hash-384": 384, "hash-768": 768, "hash-1536": 1536}
    assert states == {"hash-384": "retired", "hash-768": "building", "hash-1536": "active"}
    assert len(indexes) == 3 and all(
        "USING hnsw" in d and "vector_cosine_ops" in d for d in indexes
    )
    assert statuses == {"complete": 6}
    # hash-384 stopped at the swap; the two served models cover every chunk.
    assert by_model["hash-1536"] == by_model["hash-768"] == chunks > by_model["hash-384"]

    embedders = QueryEmbedders(settings, engine)
    assert embedders.get().name == "hash-1536"
    missing = [
        d
        for d in documents
        if not search(
            engine,
            embedders.get(),
            "the",
            tenant=settings.tenant,
            k=1,
            mode="vector",
            filters=Filters(document_ids=[d]),
        ).hits
    ]
    assert missing == []
    with pytest.raises(NoVectors, match="hash-512 has no vectors"):
        search(engine, embedders.get("hash-512"), "the", tenant=settings.tenant, named=True)
    # Keyword search needs no vectors: it is not refused for want of them.
    assert search(engine, None, "the", tenant=settings.tenant, mode="keyword").mode == "keyword"

    # The chunks API shows each vector's model identity and lineage; jobs count the active model.
    with engine.connect() as conn:
        doc, job = conn.execute(
            select(Document.id, Document.current_job_id).order_by(Document.created_at.desc())
        ).first()  # type: ignore[misc]
    api = serve(settings)
    server = next(api)
    try:
        with server.client() as client:
            found = client.get(f"/v1/documents/{doc}/chunks")
            assert found.status_code == 200, found.text
            chunks = found.json()["items"]
            embedded = client.get(f"/v1/jobs/{job}").json()["chunks_embedded"]
    finally:
        next(api, None)
    first = {v["model"]: v for v in chunks[0]["vectors"]}
    assert set(first) == {"hash-768", "hash-1536"}  # arrived after the swap
    assert {
        k: first["hash-1536"][k] for k in ("model_version", "dimensions", "served_model_id")
    } == {
        "model_version": "1",
        "dimensions": 1536,
        "served_model_id": None,
    }
    assert first["hash-1536"]["source_topic"] == settings.topic("documents.chunked")
    assert first["hash-1536"]["source_offset"] >= 0 and first["hash-1536"]["parser"]
    assert first["hash-1536"]["chunker_version"] and first["hash-1536"]["chunker_config_hash"]
    assert embedded == len(chunks)  # not doubled by hash-768's vectors

    # A process whose model disagrees with the database's record is refused at start.
    changed = HashEmbedder(768)
    changed.version = "2"
    with pytest.raises(registry.ModelMismatch, match="version 2"), engine.begin() as conn:
        registry.register(conn, changed, "hash-768", state="active")
    embedders.close()
    engine.dispose()


def test_search_plan_uses_the_models_index(settings: Settings) -> None:
    """A tenant-scoped top-k with one model's cast walks that model's partial HNSW index."""
    _through_pipeline(settings, corpus.mixed(1, seed=72))
    engine = make_engine(settings)
    query = HashEmbedder(384).embed(["the"])[0]
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT v.chunk_id FROM document_vector_buffer v "
                    "JOIN documents d ON d.id = v.document_id "
                    "WHERE d.tenant = :t AND v.model = 'hash-384' "
                    "ORDER BY v.embedding::vector(384) <=> CAST(:q AS vector(384)) LIMIT 5"
                ),
                {"t": settings.tenant, "q": str(query)},
            ).scalars()
        )
    assert "ix_vectors_hash_384_384_" in plan, plan
    engine.dispose()
    assert uuid  # imported for document ids' type


@pytest.mark.long
@pytest.mark.timeout(1200)
def test_search_plan_at_100k_vectors(settings: Settings) -> None:
    """100k 384-d vectors beside 2k of another model: the top-k walks the model's HNSW index."""
    from ragstream.db import vectors

    _through_pipeline(settings, corpus.mixed(1, seed=73))
    engine = make_engine(settings)
    # Bulk-load without the index, then build it once (as an operator would for a backfill):
    # maintaining HNSW row by row for 100k inserts takes far longer than one build.
    with engine.begin() as conn:
        conn.execute(text(f'DROP INDEX IF EXISTS "{vectors.index_name("hash-384", 384)}"'))
    fill = (
        "INSERT INTO document_vector_buffer (id, chunk_id, document_id, job_id, model,"
        " model_version, dimensions, text_sha256, chunker_version, chunker_config_hash, parser,"
        " parser_version, embedding)"
        " SELECT gen_random_uuid(), v.chunk_id, v.document_id, v.job_id, :model, '1', :dims,"
        " v.text_sha256, v.chunker_version, v.chunker_config_hash, v.parser, v.parser_version,"
        " (SELECT array_agg(random() - 0.5) FROM generate_series(1, :dims) i WHERE g.n > 0)::vector"
        " FROM generate_series(1, :n) AS g(n),"
        " (SELECT * FROM document_vector_buffer LIMIT 1) v"
    )
    with engine.begin() as conn:
        conn.execute(text(fill), {"model": "hash-384", "dims": 384, "n": 100_000})
        conn.execute(text(fill), {"model": "hash-768", "dims": 768, "n": 2_000})
        conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
        vectors.ensure_index(conn, "hash-384", 384)
        vectors.ensure_index(conn, "hash-768", 768)
        conn.execute(text("ANALYZE document_vector_buffer"))
        conn.execute(text("ANALYZE documents"))
    query = HashEmbedder(384).embed(["the"])[0]
    with engine.begin() as conn:
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN ANALYZE SELECT v.chunk_id FROM document_vector_buffer v "
                    "JOIN documents d ON d.id = v.document_id "
                    "WHERE d.tenant = :t AND d.status = 'complete' AND v.model = 'hash-384' "
                    "ORDER BY v.embedding::vector(384) <=> CAST(:q AS vector(384)) LIMIT 10"
                ),
                {"t": settings.tenant, "q": str(query)},
            ).scalars()
        )
    print(plan)
    assert "Index Scan using ix_vectors_hash_384_384_" in plan, plan
    engine.dispose()
