"""embed: documents.chunked -> documents.embedded. Batches chunks across messages.

Vectors are content-addressed: the sha256 of (model, model version, text) keys
a row of ``embedding_cache``. A batch looks its texts up first and sends only
the texts never seen before to the model, each once, so identical chunks
anywhere in the corpus, and the unchanged chunks of a re-ingested document,
cost a lookup instead of an inference.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence

from prometheus_client import Counter
from sqlalchemy import Connection, select

from ragstream import crypto, ids
from ragstream.consumers.base import Incoming, Stage, StageContext, StageOutput
from ragstream.db.models import EmbeddingCache, VectorBuffer
from ragstream.embedding import Embedder, make_embedder, registry
from ragstream.schemas import outgoing
from ragstream.schemas.events import ChunkCreated, utc_now
from ragstream.state import DocumentStatus

CACHE_LOOKUPS = Counter(
    "ragstream_embedding_cache_lookups_total",
    "Chunk texts looked up in the embedding cache, by outcome (hit, miss).",
    ("outcome",),
)
SHREDDED = Counter(
    "ragstream_embed_shredded_total",
    "Chunks skipped because their document was deleted (its key is gone).",
)
EMBEDDED_TEXTS = Counter(
    "ragstream_embedded_texts_total",
    "Distinct texts sent to the embedding model (what the cache could not answer).",
)


def cache_key(model: str, model_version: str, text: str) -> str:
    """The content address of a vector: same model, same version, same text, same vector."""
    digest = hashlib.sha256()
    for part in (model, model_version):
        digest.update(part.encode())
        digest.update(b"\x1f")
    digest.update(text.encode())
    return digest.hexdigest()


def cached_vectors(conn: Connection, keys: Sequence[str]) -> dict[str, list[float]]:
    """The vectors the cache holds for ``keys``."""
    if not keys:
        return {}
    rows = conn.execute(
        select(EmbeddingCache.key, EmbeddingCache.embedding).where(EmbeddingCache.key.in_(keys))
    )
    return {key: [float(x) for x in vector] for key, vector in rows}


def _opened(batch: list[Incoming], ctx: StageContext) -> tuple[list[Incoming], list[ChunkCreated]]:
    """The messages whose text opens with their document's key, and their readable events.

    A chunk of a deleted document (its key is gone: crypto-shredded) is skipped:
    there is nothing to embed, and nothing to fail.
    """
    with ctx.engine.connect() as conn:
        keys = crypto.keys_for(conn, {uuid.UUID(m.event.document_id) for m in batch})
    kept: list[Incoming] = []
    events: list[ChunkCreated] = []
    for message in batch:
        try:
            events.append(crypto.open_chunk(message.event, keys))
        except crypto.Shredded:
            SHREDDED.inc()
            continue
        kept.append(message)
    return kept, events


class EmbedStage(Stage):
    """Embeds with the models the database serves: the active one, and any being built.

    The configured model (``RAGSTREAM_EMBEDDER``) becomes active only in a fresh
    database; otherwise the worker follows the registry, looked up once per
    batch, so a ``reembed --swap`` reaches running workers without a restart,
    and a worker started with another model never writes vectors nobody serves.
    Only the active model's vectors emit ``ChunkEmbedded`` (finalize counts them).
    """

    name = "embed"
    consumes = ChunkCreated
    started_status = DocumentStatus.EMBEDDING
    start_state = "active"

    def setup(self, ctx: StageContext) -> None:
        self.embedder: Embedder = make_embedder(ctx.settings)
        self.use_cache = ctx.settings.embedding_cache
        self._embedders: dict[str, Embedder] = {self.embedder.name: self.embedder}
        with ctx.engine.begin() as conn:
            registry.register(
                conn, self.embedder, registry.configured_spec(ctx.settings), state=self.start_state
            )

    def _targets(self, ctx: StageContext) -> list[tuple[Embedder, bool]]:
        """(embedder, is the active model) for every model served now."""
        with ctx.engine.connect() as conn:
            serving = registry.serving(conn)
        targets: list[tuple[Embedder, bool]] = []
        for model in serving:
            embedder = self._embedders.get(model.model)
            if embedder is None:
                embedder = make_embedder(registry.model_settings(ctx.settings, model.spec))
                registry.check(embedder, model.version, model.dimensions)
                self._embedders[model.model] = embedder
            targets.append((embedder, model.state == "active"))
        return targets

    def _vectors(
        self, embedder: Embedder, texts: list[str], ctx: StageContext, out: StageOutput
    ) -> dict[str, list[float]]:
        """A vector for every text, by cache key; only texts never seen go to the model."""
        model, version = embedder.name, embedder.version
        by_key = {cache_key(model, version, text): text for text in texts}
        found: dict[str, list[float]] = {}
        if self.use_cache:
            with ctx.engine.connect() as conn:
                found = cached_vectors(conn, list(by_key))
        missing = [key for key in by_key if key not in found]
        CACHE_LOOKUPS.labels("hit").inc(len(by_key) - len(missing))
        CACHE_LOOKUPS.labels("miss").inc(len(missing))
        if not missing:
            return found
        fresh = embedder.embed([by_key[key] for key in missing])
        EMBEDDED_TEXTS.inc(len(missing))
        new = dict(zip(missing, fresh, strict=True))
        if self.use_cache:
            out.inserts += [
                (
                    EmbeddingCache,
                    {
                        "key": key,
                        "model": model,
                        "model_version": version,
                        "text_sha256": hashlib.sha256(by_key[key].encode()).hexdigest(),
                        "dimensions": len(vector),
                        "embedding": vector,
                    },
                )
                for key, vector in new.items()
            ]
        return {**found, **new}

    def process_current(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        batch, events = _opened(batch, ctx)
        out = StageOutput()
        if not batch:
            return out
        for embedder, emits in self._targets(ctx):
            self._embed_with(embedder, emits, batch, events, ctx, out)
        return out

    def _embed_with(
        self,
        embedder: Embedder,
        emits: bool,
        batch: list[Incoming],
        events: list[ChunkCreated],
        ctx: StageContext,
        out: StageOutput,
    ) -> None:
        vectors = self._vectors(embedder, [e.text for e in events], ctx, out)
        out.extend(embedded_output(ctx, embedder, emits, batch, events, vectors))

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        return self.process_current([message], ctx)


def embedded_output(
    names: outgoing.TopicNames,
    embedder: Embedder,
    emits: bool,
    batch: Sequence[Incoming],
    events: Sequence[ChunkCreated],
    vectors: Mapping[str, Sequence[float]],
) -> StageOutput:
    """The vector rows of a batch for one model (no I/O; ``vectors`` by cache key), and,
    for the active model (``emits``), one ``ChunkEmbedded`` per chunk."""
    model, version = embedder.name, embedder.version
    out = StageOutput()
    now = utc_now()
    for message, event in zip(batch, events, strict=True):
        vector = vectors[cache_key(model, version, event.text)]
        chunk_id = uuid.UUID(event.chunk_id)
        embedding_id = ids.embedding_id(chunk_id, model)
        out.upserts.append(
            (
                VectorBuffer,
                {
                    "id": embedding_id,
                    "chunk_id": chunk_id,
                    "document_id": uuid.UUID(event.document_id),
                    "job_id": uuid.UUID(event.job_id),
                    "model": model,
                    "model_version": version,
                    "dimensions": embedder.dimensions,
                    "served_model_id": embedder.served_model_id,
                    "text_sha256": hashlib.sha256(event.text.encode()).hexdigest(),
                    "chunker_version": event.chunker_version,
                    "chunker_config_hash": event.chunker_config_hash,
                    "parser": event.parser,
                    "parser_version": event.parser_version,
                    "embedding": list(vector),
                    "source_topic": message.topic,
                    "source_partition": message.partition,
                    "source_offset": message.offset,
                },
            )
        )
        if emits:
            out.events.append(
                outgoing.chunk_embedded(
                    names,
                    event,
                    embedding_id=embedding_id,
                    model=model,
                    model_version=version,
                    vector=vector,
                    embedded_at=now,
                )
            )
    return out
