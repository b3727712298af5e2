"""The model registry (``embedding_models``): which model is active, which is being built.

The database, not each process's settings, says which model search and the
live embed workers use: ``RAGSTREAM_EMBEDDER`` only names the model a fresh
database starts with. Every model's name, version and dimension are recorded
the first time it is used, and a process whose embedder disagrees is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

from sqlalchemy import Connection, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ragstream.db import vectors
from ragstream.db.models import EmbeddingModel
from ragstream.embedding.base import Embedder
from ragstream.errors import PermanentError, RagstreamError
from ragstream.settings import EmbedderName, Settings

BACKENDS: tuple[str, ...] = get_args(EmbedderName)
SERVING = ("active", "building")
_HASH = re.compile(r"hash-(\d+)")
MINILM_INT8 = "minilm-int8"
"""all-MiniLM-L6-v2 quantized: its vectors are another model's, so it is another spec
(``minilm`` is the fp32 model, on either runtime)."""


class UnknownModel(PermanentError):
    """A model spec that names no embedding backend, or one that cannot be loaded here."""


class ModelMismatch(RagstreamError):
    """The embedder's version or dimension differs from what the database recorded for it."""


def canonical_spec(settings: Settings, spec: str) -> str:
    """``hash-<N>``, ``minilm``, ``minilm-int8``, ``static`` or ``openai:<model>``
    (``hash`` = the configured size, 384)."""
    spec = spec.strip()
    if spec == "hash":
        return f"hash-{settings.hash_dimensions}"
    if _HASH.fullmatch(spec) or spec == MINILM_INT8:
        return spec
    backend, _, variant = spec.partition(":")
    if backend not in BACKENDS or backend == "hash" or (variant and backend != "openai"):
        raise UnknownModel(
            f"unknown model {spec!r}: one of hash, hash-<N> (hash-384, hash-768, hash-1536), "
            "minilm, minilm-int8, static, openai, openai:<model name>"
        )
    if backend == "openai":
        return f"openai:{variant or settings.openai_model}"
    return backend


def model_settings(settings: Settings, spec: str) -> Settings:
    """``settings`` with the embedder that ``spec`` names."""
    canonical = canonical_spec(settings, spec)
    found = _HASH.fullmatch(canonical)
    if found:
        return settings.model_copy(
            update={"embedder": "hash", "hash_dimensions": int(found.group(1))}
        )
    if canonical in ("minilm", MINILM_INT8):
        precision = "int8" if canonical == MINILM_INT8 else "fp32"
        return settings.model_copy(update={"embedder": "minilm", "embed_precision": precision})
    backend, _, variant = canonical.partition(":")
    update_: dict[str, str] = {"embedder": backend}
    if variant:
        update_["openai_model"] = variant
    return settings.model_copy(update=update_)


def configured_spec(settings: Settings) -> str:
    """The spec of the model ``settings`` configures (``RAGSTREAM_EMBEDDER``)."""
    if settings.embedder == "openai":
        return f"openai:{settings.openai_model}"
    if settings.embedder == "minilm":
        from ragstream.embedding.onnx_runtime import minilm_precision, minilm_runtime

        runtime = minilm_runtime(settings.embed_runtime)
        if minilm_precision(settings.embed_precision, runtime) == "int8":
            return MINILM_INT8
    return canonical_spec(settings, settings.embedder)


@dataclass(frozen=True)
class Registered:
    model: str
    spec: str
    state: str
    version: str | None
    dimensions: int | None


def serving(conn: Connection | Session) -> list[Registered]:
    """The active model first, then the ones being built."""
    rows = conn.execute(
        select(
            EmbeddingModel.model,
            EmbeddingModel.spec,
            EmbeddingModel.state,
            EmbeddingModel.version,
            EmbeddingModel.dimensions,
        ).where(EmbeddingModel.state.in_(SERVING))
    ).all()
    found = [Registered(r.model, r.spec, r.state, r.version, r.dimensions) for r in rows]
    return sorted(found, key=lambda r: (r.state != "active", r.model))


def active(conn: Connection | Session) -> Registered | None:
    found = serving(conn)
    return found[0] if found and found[0].state == "active" else None


def register(conn: Connection, embedder: Embedder, spec: str, *, state: str) -> str:
    """Record ``embedder`` (refused when it disagrees with the record) and create its index.

    ``state`` is what a model never seen before gets; ``active`` is taken only
    when no model is active (a fresh database), else such a model is left
    unregistered (``unserved``): nobody writes its vectors. Returns its state.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('ragstream-embedding-models'))"))
    row = conn.execute(
        select(EmbeddingModel.state, EmbeddingModel.version, EmbeddingModel.dimensions).where(
            EmbeddingModel.model == embedder.name
        )
    ).one_or_none()
    if row is not None:
        check(embedder, row.version, row.dimensions)
    if row is None and state == "active" and active(conn) is not None:
        return "unserved"  # a live worker's configured model: it follows the database instead
    identity = {
        "version": embedder.version,
        "dimensions": embedder.dimensions,
        "served_model_id": embedder.served_model_id,
    }
    if row is None:
        conn.execute(
            insert(EmbeddingModel)
            .values(model=embedder.name, spec=spec, state=state, **identity)
            .on_conflict_do_nothing()
        )
        if state == "active":
            conn.execute(
                update(EmbeddingModel)
                .where(EmbeddingModel.model == embedder.name)
                .values(activated_at=text("statement_timestamp()"))
            )
    else:
        conn.execute(
            update(EmbeddingModel)
            .where(EmbeddingModel.model == embedder.name)
            .values(
                **{k: v for k, v in identity.items() if v is not None},
            )
        )
        state = row.state
    vectors.ensure_index(conn, embedder.name, embedder.dimensions)
    return state


def check(embedder: Embedder, version: str | None, dimensions: int | None) -> None:
    """Refuse an embedder whose version or dimension differs from the database's record."""
    if version is not None and version != embedder.version:
        raise ModelMismatch(
            f"model {embedder.name}: this process has version {embedder.version}, the database "
            f"holds vectors of version {version}; re-embed under a new model name instead"
        )
    if dimensions is not None and dimensions != embedder.dimensions:
        raise ModelMismatch(
            f"model {embedder.name}: this process makes {embedder.dimensions}-d vectors, the "
            f"database holds {dimensions}-d vectors of it"
        )
