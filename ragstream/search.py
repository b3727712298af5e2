"""Search: the query's vector, its words, or both fused, over the stored chunks.

Three modes (:data:`ragstream.textsearch.MODES`): ``vector`` ranks by cosine
over one model's vectors; ``keyword`` by PostgreSQL full-text search over the
chunk text (:mod:`ragstream.textsearch`); ``hybrid`` (the default) fuses the two
rankings by reciprocal rank fusion with per-query weights, and puts chunks that
hold a query's ``"quoted phrase"`` first. Only ``complete`` documents of the
caller's tenant that pass the filters are searched, inside the index walks, and
only vectors of the model that embeds the query: vectors of different models are
never compared. The HTTP API and ``ragstream search`` both call :func:`search`,
with the embedder :class:`QueryEmbedders` picks: the model a caller names, else
the one ``ragstream reembed --swap`` made active, else the configured one. A
swap is seen by the next query, without a restart.

Pages beyond the first are asked for with the opaque ``next_cursor`` of the
previous one; a cursor is bound to its query, mode, weights, filters and model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from pgvector.sqlalchemy import Vector
from sqlalchemy import Connection, Engine, cast, exists, select

from ragstream import textsearch
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.embedding import Embedder, make_embedder
from ragstream.errors import NoVectors
from ragstream.settings import Settings
from ragstream.textsearch import Filters, Mode

MAX_K = 100
MAX_DEPTH = 1000
"""How far pages reach: a search is a ranking, not an export."""
CANDIDATES = 100
"""Each ranking's depth before fusion, at least: enough that a chunk near the top of one
ranking but missing from the other's first page still meets it."""


class BadCursor(ValueError):
    """A cursor that is malformed or belongs to another search."""


@dataclass(frozen=True)
class Hit:
    score: float
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    chunk_index: int
    text: str
    pages: tuple[int, ...]
    heading_path: tuple[str, ...]
    filename: str | None
    external_id: str | None
    vector_rank: int | None = None
    keyword_rank: int | None = None


@dataclass(frozen=True)
class SearchPage:
    hits: list[Hit]
    mode: Mode
    next_cursor: str | None = None
    phrases: list[str] = field(default_factory=list)


class QueryEmbedders:
    """The embedder for each model queries ask for, made once and kept for the process."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._made: dict[tuple[str, str], Embedder] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None = None) -> Embedder:
        """``model`` is a spec (``hash``, ``minilm``, ``openai:<name>``); None = the active one."""
        from ragstream.ops import reembed  # the model registry; it imports the stages

        chosen = (
            reembed.model_settings(self.settings, model)
            if model
            else reembed.search_settings(self.settings, self.engine)
        )
        key = (
            chosen.embedder,
            chosen.openai_model if chosen.embedder == "openai" else str(chosen.hash_dimensions),
        )
        with self._lock:
            if key not in self._made:
                try:
                    self._made[key] = make_embedder(chosen)
                except ImportError as exc:  # e.g. minilm without its extra
                    raise reembed.UnknownModel(f"model {model} cannot be loaded: {exc}") from exc
            return self._made[key]

    def close(self) -> None:
        with self._lock:
            for embedder in self._made.values():
                embedder.close()
            self._made.clear()


def search(
    engine: Engine,
    embedder: Embedder | None,
    query: str,
    *,
    tenant: str,
    k: int = 5,
    mode: Mode = "hybrid",
    weights: tuple[float, float] = (1.0, 1.0),
    filters: Filters | None = None,
    cursor: str | None = None,
    named: bool = False,
) -> SearchPage:
    """One page of the ``k`` best chunks for ``query``, best first.

    The score is the cosine similarity (``vector``), ``ts_rank_cd`` (``keyword``),
    or the fused score (``hybrid``); in the last two, chunks holding the query's
    exact phrases come first. ``weights`` are (vector, keyword) for the fusion.
    ``named``: the caller chose the model, so one without any vectors is an
    error (:class:`NoVectors`) rather than an empty answer.
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, not {k}")
    if mode not in textsearch.MODES:
        raise ValueError(f"mode must be one of {', '.join(textsearch.MODES)}, not {mode!r}")
    if any(w < 0 for w in weights) or not any(weights):
        raise ValueError("weights must be >= 0 and not all 0")
    if mode != "keyword" and embedder is None:
        raise ValueError(f"a {mode} search needs an embedder")
    filters = filters or Filters()
    model = embedder.name if embedder is not None and mode != "keyword" else None
    binding = _binding(query, mode, weights, filters, model)
    offset = _offset(cursor, binding)
    if offset + k > MAX_DEPTH:
        raise BadCursor(f"pages reach {MAX_DEPTH} hits at most")
    depth = min(MAX_DEPTH, max(CANDIDATES, 2 * (offset + k)))
    must = textsearch.exact_phrases(query) if mode != "vector" else []
    with engine.begin() as conn:
        textsearch.set_iterative_scan(conn)
        by_vector: list[tuple[uuid.UUID, float]] = []
        by_keyword: list[tuple[uuid.UUID, float]] = []
        if mode != "vector":
            by_keyword = _keyword_ranking(conn, query, must, tenant, filters, depth)
        if embedder is not None and mode != "keyword":
            if (
                named
                and not conn.execute(
                    select(exists().where(VectorBuffer.model == embedder.name))
                ).scalar()
            ):
                raise NoVectors(f"model {embedder.name} has no vectors here: nothing to search")
            also = [c for c, _ in by_keyword]
            by_vector = _vector_ranking(conn, embedder, query, tenant, filters, depth, also)
        first = textsearch.holding(conn, {c for c, _ in [*by_vector, *by_keyword]}, must)
        ranked = _rank(mode, weights, by_vector, by_keyword, first)
        page = ranked[offset : offset + k]
        hits = _hits(conn, page, [c for c, _ in by_vector], [c for c, _ in by_keyword])
    more = len(ranked) > offset + k and offset + 2 * k <= MAX_DEPTH
    return SearchPage(
        hits=hits,
        mode=mode,
        next_cursor=_cursor(offset + k, binding) if more else None,
        phrases=textsearch.phrases(query),
    )


def _vector_ranking(
    conn: Connection,
    embedder: Embedder,
    query: str,
    tenant: str,
    filters: Filters,
    depth: int,
    also: Sequence[uuid.UUID] = (),
) -> list[tuple[uuid.UUID, float]]:
    """The ``depth`` nearest chunks; then ``also`` (the keyword matches beyond them), each
    by its own cosine, so every candidate of the fusion is judged by both rankings."""
    (vector,) = embedder.embed([query])
    # The same cast and ``model =`` filter as the model's partial HNSW index (db/vectors.py).
    embedding = cast(VectorBuffer.embedding, Vector(embedder.dimensions))
    distance = embedding.cosine_distance(list(vector))
    stmt = (
        select(VectorBuffer.chunk_id, (1 - distance).label("score"))
        .join(Document, Document.id == VectorBuffer.document_id)
        .where(VectorBuffer.model == embedder.name, *textsearch.searchable(tenant, filters))
    )
    nearest = conn.execute(stmt.order_by(distance).limit(depth))
    ranking = [(r.chunk_id, float(r.score)) for r in nearest]
    seen = {c for c, _ in ranking}
    beyond = [c for c in also if c not in seen]
    if beyond:
        # Looked up by chunk id and sorted here: ordering by distance in SQL would walk
        # the HNSW index in search of these few rows.
        rows = conn.execute(stmt.where(VectorBuffer.chunk_id.in_(beyond)))
        ranking += sorted(((r.chunk_id, float(r.score)) for r in rows), key=lambda h: -h[1])
    return ranking


def _keyword_ranking(
    conn: Connection, query: str, must: list[str], tenant: str, filters: Filters, depth: int
) -> list[tuple[uuid.UUID, float]]:
    """The chunks holding every word; then, for quoted phrases among other words, those
    holding only the phrases (a sentence-length query's chunks hold all its words)."""
    configs = textsearch.tenant_configs(conn, tenant)
    stmt = textsearch.keyword_query(
        conn, query, tenant=tenant, filters=filters, limit=depth, configs=configs
    )
    ranking = [(r.id, float(r.score)) for r in conn.execute(stmt)]
    if textsearch.phrases(query) and textsearch.outside_phrases(query):
        only = " ".join(f'"{p}"' for p in must)
        stmt = textsearch.keyword_query(
            conn, only, tenant=tenant, filters=filters, limit=depth, configs=configs
        )
        seen = {c for c, _ in ranking}
        ranking += [(r.id, float(r.score)) for r in conn.execute(stmt) if r.id not in seen]
    return ranking


def _rank(
    mode: Mode,
    weights: tuple[float, float],
    by_vector: list[tuple[uuid.UUID, float]],
    by_keyword: list[tuple[uuid.UUID, float]],
    first: set[uuid.UUID],
) -> list[tuple[uuid.UUID, float]]:
    if mode == "vector":
        return by_vector
    ranked = by_keyword if mode == "keyword" else textsearch.fuse([by_vector, by_keyword], weights)
    # A chunk holding the exact phrase is what the caller asked for: those first (stable).
    return sorted(ranked, key=lambda item: item[0] not in first)


def _hits(
    conn: Connection,
    page: list[tuple[uuid.UUID, float]],
    by_vector: list[uuid.UUID],
    by_keyword: list[uuid.UUID],
) -> list[Hit]:
    if not page:
        return []
    rows = {
        r.id: r
        for r in conn.execute(
            select(
                ChunkBuffer.id,
                ChunkBuffer.document_id,
                ChunkBuffer.chunk_index,
                ChunkBuffer.text,
                ChunkBuffer.pages,
                ChunkBuffer.heading_path,
                Document.filename,
                Document.external_id,
            )
            .join(Document, Document.id == ChunkBuffer.document_id)
            .where(ChunkBuffer.id.in_([c for c, _ in page]))
        )
    }
    vector_rank = {c: i for i, c in enumerate(by_vector, 1)}
    keyword_rank = {c: i for i, c in enumerate(by_keyword, 1)}
    return [
        Hit(
            score=score,
            chunk_id=r.id,
            document_id=r.document_id,
            chunk_index=r.chunk_index,
            text=r.text,
            pages=tuple(r.pages),
            heading_path=tuple(r.heading_path),
            filename=r.filename,
            external_id=r.external_id,
            vector_rank=vector_rank.get(r.id),
            keyword_rank=keyword_rank.get(r.id),
        )
        for chunk_id, score in page
        if (r := rows.get(chunk_id)) is not None
    ]


def _binding(
    query: str, mode: Mode, weights: tuple[float, float], filters: Filters, model: str | None
) -> str:
    """What a cursor is valid for: the same search, asked again for a later page."""
    what = {"q": query, "m": mode, "w": list(weights), "f": asdict(filters), "model": model}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cursor(offset: int, binding: str) -> str:
    raw = json.dumps({"o": offset, "b": binding}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset(cursor: str | None, binding: str) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        offset, bound = int(data["o"]), str(data["b"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadCursor("cursor is not one this API gave out") from None
    if bound != binding:
        raise BadCursor("cursor belongs to another search (query, mode, weights, filters, model)")
    if not 0 <= offset < MAX_DEPTH:
        raise BadCursor("cursor is out of range")
    return offset
