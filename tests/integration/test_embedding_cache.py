"""The content-addressed embedding cache, on the real broker and database.

The model is asked only for texts it has never embedded: identical chunks
anywhere are embedded once, and a re-ingest re-embeds only what changed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select

from ragstream.chunking import ChunkerConfig, chunk_document
from ragstream.consumers.embed import cache_key
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, EmbeddingCache, VectorBuffer
from ragstream.embedding import make_embedder
from ragstream.embedding.budget import token_budget
from ragstream.parsing import parse_bytes
from ragstream.settings import Settings
from tests.pipeline import prepare

pytestmark = pytest.mark.integration

SHARED = (
    "## Licence\n\nThis page is shared by every document of the corpus. Reuse it freely, "
    "keep the notice, and expect no warranty of any kind from the authors.\n"
)


def _doc(n: int, edited: bool = False) -> bytes:
    sections = [f"# Notes {n}\n"]
    for i in range(3):
        tail = " It was edited after the first ingest." if edited and i == 2 else ""
        sections.append(
            f"## Part {i} of {n}\n\nSection {i} of document {n} talks about offsets, "
            f"batches and consumer group {n * 10 + i}.{tail}\n"
        )
    sections.append(SHARED)
    return "\n".join(sections).encode()


def _embedded() -> float:
    return REGISTRY.get_sample_value("ragstream_embedded_texts_total") or 0.0


def _hits() -> float:
    return (
        REGISTRY.get_sample_value("ragstream_embedding_cache_lookups_total", {"outcome": "hit"})
        or 0.0
    )


def _run(settings: Settings, stage: str, messages: int) -> int:
    stats = build_runner(settings, stage).run(max_messages=messages, idle_timeout_s=20)
    return stats.processed


def _ingest(settings: Settings, files: list[tuple[str, bytes]]) -> int:
    """Parse, chunk and embed ``files`` with in-process runners; returns the new chunks."""
    submitter = prepare(settings)
    created = [submitter.submit(data, filename=name).created for name, data in files]
    fresh = sum(created)
    assert _run(settings, "parse", fresh) == fresh
    assert _run(settings, "chunk", fresh) == fresh
    engine = make_engine(settings)
    with engine.connect() as conn:
        chunks = conn.execute(
            select(func.count())
            .select_from(ChunkBuffer)
            .where(~ChunkBuffer.id.in_(select(VectorBuffer.chunk_id)))
        ).scalar_one()
    engine.dispose()
    assert _run(settings, "embed", chunks) == chunks
    return int(chunks)


def _chunk_texts(settings: Settings, name: str, data: bytes) -> list[str]:
    """The chunker alone on one file: the texts the pipeline will embed."""
    budget = token_budget(settings)
    config = ChunkerConfig(
        target_tokens=settings.chunk_target_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        max_tokens=budget.max_input_tokens,
    )
    return [c.text for c in chunk_document(parse_bytes(data, name), config, budget.count_tokens)]


def test_identical_chunks_anywhere_are_embedded_once(settings: Settings) -> None:
    files = [(f"notes-{n}.md", _doc(n)) for n in range(4)]
    before = _embedded()
    chunks = _ingest(settings, files)

    engine = make_engine(settings)
    with engine.connect() as conn:
        texts = list(conn.execute(select(ChunkBuffer.text)).scalars())
        cached = conn.execute(select(func.count()).select_from(EmbeddingCache)).scalar_one()
        vectors = conn.execute(
            select(ChunkBuffer.text, VectorBuffer.embedding).join(
                VectorBuffer, VectorBuffer.chunk_id == ChunkBuffer.id
            )
        ).all()
    engine.dispose()
    repeats = Counter(texts)
    assert chunks == len(texts) == len(vectors)
    assert max(repeats.values()) == len(files), "the shared section must be a chunk of its own"
    assert _embedded() - before == len(repeats) == cached
    # Every copy of a text carries the one vector.
    by_text: dict[str, list[np.ndarray]] = {}
    for text, vector in vectors:
        by_text.setdefault(text, []).append(np.asarray(vector))
    for copies in by_text.values():
        assert all(np.array_equal(copies[0], v) for v in copies[1:])


def test_reingest_with_one_document_edited_embeds_only_its_changed_chunks(
    settings: Settings,
) -> None:
    files = [(f"notes-{n}.md", _doc(n)) for n in range(4)]
    _ingest(settings, files)
    edited = ("notes-2.md", _doc(2, edited=True))
    old_texts = {t for name, data in files for t in _chunk_texts(settings, name, data)}
    new_texts = _chunk_texts(settings, *edited)
    changed = {t for t in new_texts if t not in old_texts}
    assert 0 < len(changed) < len(new_texts)

    before, hits = _embedded(), _hits()
    again = [*files[:2], edited, *files[3:]]
    assert _ingest(settings, again) == len(new_texts)  # only the edited document is new
    assert _embedded() - before == len(changed)
    assert _hits() - hits == len(set(new_texts)) - len(changed)


def test_a_cached_vector_is_served_instead_of_the_model(settings: Settings) -> None:
    name, data = "notes-7.md", _doc(7)
    embedder = make_embedder(settings)
    shared = next(t for t in _chunk_texts(settings, name, data) if t.startswith("Licence"))
    planted = [0.0] * embedder.dimensions
    planted[5] = 1.0  # no text hashes to exactly this vector
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            insert(EmbeddingCache).values(
                key=cache_key(embedder.name, embedder.version, shared),
                model=embedder.name,
                model_version=embedder.version,
                text_sha256="0" * 64,
                dimensions=embedder.dimensions,
                embedding=planted,
            )
        )
    before = _embedded()
    chunks = _ingest(settings, [(name, data)])
    with engine.connect() as conn:
        got = conn.execute(
            select(VectorBuffer.embedding)
            .join(ChunkBuffer, ChunkBuffer.id == VectorBuffer.chunk_id)
            .where(ChunkBuffer.text == shared)
        ).scalar_one()
    engine.dispose()
    assert np.array_equal(np.asarray(got), np.asarray(planted, dtype=np.float32))
    assert _embedded() - before == chunks - 1


def test_without_the_cache_every_text_goes_to_the_model(settings: Settings) -> None:
    uncached = settings.model_copy(update={"embedding_cache": False})
    files = [(f"notes-{n}.md", _doc(n)) for n in range(2)]
    before = _embedded()
    _ingest(uncached, files)
    _ingest(uncached, [("notes-9.md", _doc(9))])
    engine = make_engine(settings)
    with engine.connect() as conn:
        cached = conn.execute(select(func.count()).select_from(EmbeddingCache)).scalar_one()
        texts = list(conn.execute(select(ChunkBuffer.text)).scalars())
    engine.dispose()
    assert cached == 0
    # The shared section of the third document is embedded again: nothing remembered it.
    assert _embedded() - before >= len(set(texts)) + 1
