"""``ragstream reembed``: a shadow build of a second model from ``documents.chunked``, then a swap.

The second model is the ``openai`` backend pointed at a local OpenAI-compatible
endpoint: a real HTTP embedder with its own model name (the hash models of
other dimensions are in ``test_models.py``).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from ragstream import ids, topology
from ragstream.cli import app
from ragstream.consumers.base import Incoming, StageContext, StageOutput
from ragstream.consumers.runner import StageRunner
from ragstream.consumers.shadow import ShadowEmbedStage
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.errors import EmbedderRejected
from ragstream.kafka import admin_client
from ragstream.ops import dlq as dlqs
from ragstream.ops import groups, reembed
from ragstream.schemas.codec import make_codec
from ragstream.search import QueryEmbedders, search
from ragstream.settings import Settings
from tests import corpus
from tests.chaos.embedding_server import EmbeddingServer
from tests.pipeline import prepare, read_topic, settings_env, submit_all

pytestmark = pytest.mark.integration

MODEL = "openai:tiny-test"


def _chunks(settings: Settings) -> int:
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one())
    finally:
        engine.dispose()


def _through_pipeline(settings: Settings, files: list[tuple[str, bytes]]) -> int:
    """Submit ``files`` and run every stage on them in this process; returns their chunks."""
    before = _chunks(settings)
    submit_all(prepare(settings), files)
    n = len(files)
    assert build_runner(settings, "parse").run(max_messages=n, idle_timeout_s=15).processed == n
    assert build_runner(settings, "chunk").run(max_messages=n, idle_timeout_s=15).processed == n
    added = _chunks(settings) - before
    embed = build_runner(settings, "embed").run(max_messages=added, idle_timeout_s=15)
    assert embed.processed == added
    assert build_runner(settings, "finalize").run(max_messages=added, idle_timeout_s=15).processed
    return added


def _embedded_end(settings: Settings) -> int:
    topic = settings.topic(topology.EMBEDDED)
    admin = admin_client(settings)
    return sum(
        high
        for _, high in groups.watermarks(admin, topic, groups.partitions(admin, topic)).values()
    )


def test_shadow_build_then_swap_only_when_coverage_is_complete(settings: Settings) -> None:
    total = _through_pipeline(settings, corpus.mixed(4, seed=94))
    engine = make_engine(settings)
    with EmbeddingServer() as server:
        s = settings.model_copy(update={"openai_base_url": server.base_url})
        assert [(c.model, c.vectors, c.chunks) for c in reembed.coverage(engine)] == [
            ("hash-384", total, total)
        ]
        with pytest.raises(reembed.CoverageIncomplete, match="0 of"):
            reembed.swap(engine, s, MODEL, MODEL)
        embedded_before = _embedded_end(s)

        built = reembed.reembed(s, MODEL, idle_timeout_s=5)
        assert (built.model, built.spec) == (MODEL, MODEL)
        assert built.group == f"{settings.topic_prefix}ragstream-embed-{MODEL}"
        assert (built.processed, built.failed, built.lag) == (total, 0, 0)
        assert (built.coverage.vectors, built.coverage.chunks) == (total, total)
        assert built.coverage.state == "building"
        assert sum(server.texts.values()) >= total

        with engine.connect() as conn:
            chunk_ids = set(conn.execute(select(ChunkBuffer.id)).scalars())
            shadow = set(
                conn.execute(select(VectorBuffer.id).where(VectorBuffer.model == MODEL)).scalars()
            )
            statuses = set(conn.execute(select(Document.status)).scalars())
            vectors = conn.execute(select(func.count()).select_from(VectorBuffer)).scalar_one()
        assert shadow == {ids.embedding_id(c, MODEL) for c in chunk_ids}
        assert vectors == 2 * total  # beside the live model's, not instead of them
        assert statuses == {"complete"}
        assert _embedded_end(s) == embedded_before  # a shadow build emits no events
        active = reembed.active_model(engine)  # the fresh database's first model
        assert active is not None and active.model == "hash-384"
        assert reembed.search_settings(s, engine).embedder == "hash"

        # A document that arrives during the build: live workers embed it with both models.
        more = _through_pipeline(s, corpus.mixed(6, seed=94)[4:])

        cli, env = CliRunner(), settings_env(s)
        status = json.loads(cli.invoke(app, ["status", "--json"], env=env).stdout)
        models = {m["model"]: m for m in status["embedding_models"]}
        assert models["hash-384"]["coverage_percent"] == 100.0
        assert models[MODEL]["vectors"] == total + more
        assert models[MODEL]["chunks"] == total + more
        assert models[MODEL]["state"] == "building"

        embedders = QueryEmbedders(s, engine)  # made before the swap, as in a running API
        assert embedders.get().name == "hash-384"
        query = "the"
        result = cli.invoke(
            app, ["reembed", "--model", MODEL, "--swap", "--idle-timeout", "5"], env=env
        )
        assert result.exit_code == 0, result.output
        assert f"{more} chunk(s) embedded" in result.output  # resumed from its offsets
        assert f"search now uses {MODEL}" in result.output

        # The next query uses the new model, without a restart; the old one can still be named.
        assert embedders.get().name == MODEL
        assert embedders.get("hash").name == "hash-384"
        new_hits = search(
            engine, embedders.get(), query, tenant=settings.tenant, k=10, mode="vector"
        ).hits
        old_hits = search(
            engine, embedders.get("hash"), query, tenant=settings.tenant, k=10, mode="vector"
        ).hits
        assert len(new_hits) == len(old_hits) == 10
        embedders.close()
        found = cli.invoke(app, ["search", query, "--json", "--k", "3"], env=env)
        assert found.exit_code == 0, found.output
        assert len(json.loads(found.stdout)) == 3
        wrong = cli.invoke(app, ["search", query, "--model", "word2vec"], env=env)
        assert wrong.exit_code == 2 and "unknown model" in wrong.output

    active = reembed.active_model(engine)
    assert active is not None and (active.model, active.spec) == (MODEL, MODEL)
    query = reembed.search_settings(settings, engine)
    assert (query.embedder, query.openai_model) == ("openai", "tiny-test")
    states = {c.model: c.state for c in reembed.coverage(engine)}
    assert states[MODEL] == "active"

    with pytest.raises(reembed.UnknownModel):
        reembed.canonical_spec(settings, "word2vec")
    assert reembed.canonical_spec(settings, "openai") == f"openai:{settings.openai_model}"
    engine.dispose()


class _Refusing(ShadowEmbedStage):
    """A new model that refuses every chunk (say, a smaller input limit)."""

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        raise EmbedderRejected("input too long for this model")


def test_a_chunk_the_new_model_refuses_leaves_its_document_complete(settings: Settings) -> None:
    total = _through_pipeline(settings, corpus.mixed(2, seed=95))
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    group = reembed.group_id(settings, "openai:refusing")
    stats = StageRunner(_Refusing(), settings, engine, ctx, group_id=group).run(
        max_messages=total, idle_timeout_s=15
    )
    assert (stats.processed, stats.failed) == (0, total)
    with engine.connect() as conn:
        statuses = set(conn.execute(select(Document.status)).scalars())
    assert statuses == {"complete"}  # the live model still serves them
    # Its dead letters go to the reembed DLQ; the live embed DLQ stays empty.
    dlq = read_topic(settings, topology.REEMBED_DLQ, expect=total, timeout_s=20)
    assert {dict(m.headers())["ragstream-dlq-error-class"] for m in dlq} == {b"EmbedderRejected"}
    listed = {s.dlq.stage: s.total for s in dlqs.summarize(settings, None, 0)}
    assert listed["reembed"] == total and listed["embed"] == 0
    engine.dispose()
