"""``ragstream reembed``: build vectors of another model beside the live ones, then switch search.

A shadow build reads ``documents.chunked`` from the beginning (every topic
keeps its records) in a consumer group of its own, named after the model, and
writes vectors keyed by ``embedding_id(chunk, model)`` next to the live
model's. Search keeps using the live model until ``swap`` makes the new one
active, and the swap is refused until every chunk of every complete document
has a vector of the new model: changing models never takes search down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from ragstream import topology
from ragstream.consumers.shadow import shadow_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, EmbeddingModel, VectorBuffer
from ragstream.embedding.registry import UnknownModel as UnknownModel  # re-exported
from ragstream.embedding.registry import canonical_spec as canonical_spec  # re-exported
from ragstream.embedding.registry import model_settings as model_settings  # re-exported
from ragstream.errors import RagstreamError
from ragstream.kafka import admin_client
from ragstream.ops import groups
from ragstream.settings import Settings
from ragstream.state import DocumentStatus


class CoverageIncomplete(RagstreamError):
    """The model lacks vectors for some chunks search can return; swapping would hide them."""


def group_id(settings: Settings, spec: str) -> str:
    return f"{settings.topic_prefix}ragstream-embed-{canonical_spec(settings, spec)}"


@dataclass(frozen=True)
class Coverage:
    """Vectors of one model for the chunks of complete documents (what search can return)."""

    model: str
    vectors: int
    chunks: int
    state: str | None  # from embedding_models; None for a model never registered there

    @property
    def complete(self) -> bool:
        return self.vectors >= self.chunks

    @property
    def percent(self) -> float:
        return 100.0 if self.chunks == 0 else 100.0 * self.vectors / self.chunks


@dataclass(frozen=True)
class ReembedResult:
    model: str
    spec: str
    group: str
    processed: int
    failed: int
    lag: int
    coverage: Coverage


def coverage(engine: Engine) -> list[Coverage]:
    """Per model: vectors for chunks of complete documents, against the number of those chunks."""
    with engine.connect() as conn:
        return _coverage(conn)


def model_coverage(engine: Engine, model: str) -> Coverage:
    with engine.connect() as conn:
        return _coverage_of(conn, model)


def _coverage(conn: Connection, include: tuple[str, ...] = ()) -> list[Coverage]:
    complete_chunks = (
        select(ChunkBuffer.id)
        .join(Document, Document.id == ChunkBuffer.document_id)
        .where(Document.status == DocumentStatus.COMPLETE.value)
        .subquery()
    )
    chunks = conn.execute(select(func.count()).select_from(complete_chunks)).scalar_one()
    vectors = dict(
        conn.execute(
            select(VectorBuffer.model, func.count())
            .join(complete_chunks, complete_chunks.c.id == VectorBuffer.chunk_id)
            .group_by(VectorBuffer.model)
        ).all()
    )
    states = dict(conn.execute(select(EmbeddingModel.model, EmbeddingModel.state)).all())
    return [
        Coverage(model, int(vectors.get(model, 0)), int(chunks), states.get(model))
        for model in sorted(set(vectors) | set(states) | set(include))
    ]


def _coverage_of(conn: Connection, model: str) -> Coverage:
    (found,) = [c for c in _coverage(conn, (model,)) if c.model == model]
    return found


@dataclass(frozen=True)
class ActiveModel:
    model: str
    spec: str
    activated_at: datetime | None


def active_model(engine: Engine) -> ActiveModel | None:
    """The model search uses when one was swapped in; None means the configured embedder."""
    with engine.connect() as conn:
        row = conn.execute(
            select(EmbeddingModel.model, EmbeddingModel.spec, EmbeddingModel.activated_at).where(
                EmbeddingModel.state == "active"
            )
        ).one_or_none()
    return ActiveModel(row.model, row.spec, row.activated_at) if row is not None else None


def search_settings(settings: Settings, engine: Engine) -> Settings:
    """The settings to build the query embedder with: the active model's, else ``settings``."""
    active = active_model(engine)
    return settings if active is None else model_settings(settings, active.spec)


def _register(conn: Connection, model: str, spec: str) -> None:
    stmt = insert(EmbeddingModel).values(model=model, spec=spec, state="building")
    conn.execute(
        stmt.on_conflict_do_update(index_elements=[EmbeddingModel.model], set_={"spec": spec})
    )


def reembed(
    settings: Settings,
    spec: str,
    *,
    idle_timeout_s: float = 10.0,
    follow: bool = False,
    max_rounds: int = 20,
) -> ReembedResult:
    """Embed every chunk in ``documents.chunked`` with ``spec``'s model, from the first record.

    Stops once its group has no lag and nothing arrived for ``idle_timeout_s``
    (or never, with ``follow``, until SIGTERM/SIGINT). Re-running resumes from
    the group's offsets; vectors already written are overwritten with the same.
    """
    spec = canonical_spec(settings, spec)
    shadow = model_settings(settings, spec)
    group = group_id(settings, spec)
    topic = settings.topic(topology.CHUNKED)
    processed = failed = 0
    lag = -1
    model = ""
    for _ in range(max_rounds):
        runner, stage = shadow_runner(shadow, group)
        if follow:
            runner.install_signal_handlers()
        try:
            stats = runner.run(idle_timeout_s=None if follow else idle_timeout_s)
        finally:
            runner.engine.dispose()
        model = stage.embedder.name
        processed, failed = processed + stats.processed, failed + stats.failed
        lag = sum(p.lag for p in groups.group_state(admin_client(settings), group, topic))
        if follow or lag == 0:
            break
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            _register(conn, model, spec)
        return ReembedResult(
            model, spec, group, processed, failed, lag, model_coverage(engine, model)
        )
    finally:
        engine.dispose()


def swap(engine: Engine, settings: Settings, spec: str, model: str) -> Coverage:
    """Make ``model`` the one search uses; refused while its coverage is incomplete."""
    with engine.begin() as conn:
        # Swaps queue behind each other here; the one-active index is the final guard.
        conn.execute(select(EmbeddingModel.model).with_for_update())
        _register(conn, model, canonical_spec(settings, spec))
        found = _coverage_of(conn, model)
        if not found.complete:
            raise CoverageIncomplete(
                f"{model} has vectors for {found.vectors} of {found.chunks} chunks of complete "
                f"documents ({found.percent:.1f}%); run `ragstream reembed --model {spec}` "
                "until it reaches 100%, then swap"
            )
        now = func.statement_timestamp()
        conn.execute(
            update(EmbeddingModel)
            .where(EmbeddingModel.state == "active", EmbeddingModel.model != model)
            .values(state="retired", updated_at=now)
        )
        conn.execute(
            update(EmbeddingModel)
            .where(EmbeddingModel.model == model)
            .values(state="active", activated_at=now, updated_at=now)
        )
    return model_coverage(engine, model)
