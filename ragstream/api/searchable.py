"""Which embedding models a search may name: only ones this deployment serves.

A caller naming any model would make the API load it (torch for ``minilm``)
or build one OpenAI client per name it invents. A named model is searchable
when it is the configured embedder, the active one (``ragstream reembed
--swap``), one registered by ``ragstream reembed``, or one with vectors in the
database; anything else is refused before an embedder is made.
"""

from __future__ import annotations

from sqlalchemy import Engine, exists, select

from ragstream.db.models import EmbeddingModel, VectorBuffer
from ragstream.embedding.minilm import MODEL_NAME
from ragstream.ops import reembed
from ragstream.settings import Settings


class ModelNotServed(Exception):
    """The named model is unknown or not searchable here; ``message`` says which are."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def vector_model_name(settings: Settings, spec: str) -> str:
    """The name an embedder for canonical ``spec`` writes in vector rows, without making it."""
    backend, _, variant = spec.partition(":")
    if backend.startswith("hash-"):  # hash-384, hash-768, ...
        return backend
    if backend == "hash":
        return f"hash-{settings.hash_dimensions}"
    if backend == "minilm":
        return MODEL_NAME
    return f"openai:{variant}"


def known_specs(settings: Settings, engine: Engine) -> list[str]:
    """The configured, the active and the registered models' specs (canonical, sorted)."""
    specs = {reembed.canonical_spec(settings, settings.embedder)}
    with engine.connect() as conn:
        for spec in conn.execute(select(EmbeddingModel.spec)).scalars():
            try:
                specs.add(reembed.canonical_spec(settings, spec))
            except reembed.UnknownModel:
                continue
    return sorted(specs)


def check(settings: Settings, engine: Engine, model: str) -> str:
    """``model`` in its canonical form when it is searchable here, else :class:`ModelNotServed`
    (a spec that names no backend at all stays :class:`reembed.UnknownModel`, a 422)."""
    spec = reembed.canonical_spec(settings, model)
    if spec in known_specs(settings, engine):
        return spec
    with engine.connect() as conn:
        has_vectors = conn.execute(
            select(exists().where(VectorBuffer.model == vector_model_name(settings, spec)))
        ).scalar_one()
    if has_vectors:
        return spec
    raise ModelNotServed(f"model {spec!r} is not searchable here; {_served(settings, engine)}")


def _served(settings: Settings, engine: Engine) -> str:
    return (
        f"searchable: {', '.join(known_specs(settings, engine))} "
        "(and models with vectors in the database)"
    )
