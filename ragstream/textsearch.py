"""Keyword search and its fusion with the vector ranking.

Vectors find what a query means; names, codes, error messages and exact
phrases are found by their words. Each chunk row carries a ``tsvector`` that
PostgreSQL generates from its text with the text-search configuration of its
document's language (:func:`detect_config`, ``simple`` when unknown), with a
GIN index. A keyword query is parsed with every configuration the tenant's
documents use (``websearch_to_tsquery``: words, ``"quoted phrases"``, ``or``,
``-not``), so a German query meets German chunks stemmed the German way; a
quoted phrase must appear in the chunk to rank first.

Hybrid search fuses the two rankings by reciprocal rank fusion (:func:`fuse`),
each term scaled by the hit's score relative to the best of its ranking, so
the two kinds of score (cosine, ``ts_rank_cd``) never need to be comparable
while a weak keyword match does not count as much as the whole query matched.
Chunks that hold the query's quoted phrases (or, unquoted, a sentence-length
query as written: :func:`exact_phrases`) rank first in keyword and hybrid search.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Connection

from ragstream.db.models import ChunkBuffer, Document, Regconfig, SyncObject
from ragstream.documents import ParsedDocument
from ragstream.state import DocumentStatus

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("vector", "keyword", "hybrid")
RRF_K = 60
"""The constant of reciprocal rank fusion: ranks past it count little, and no rank dominates."""
DEFAULT_CONFIG = "simple"
_DETECT_CHARS = 20_000
_MIN_STOPWORDS = 5


# A few of each language's commonest words, for the PostgreSQL configurations
# built in (snowball stemmers). Scripts without spaces or stemmers stay 'simple'.
def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "english": _words("the and of to in is that for it with as was on be are this by"),
    "german": _words("der die und das ist nicht ein eine zu den mit von sich auf dem des"),
    "french": _words("le la les et des est une un du que pour dans qui pas sur au avec"),
    "spanish": _words("el la los las y que de en un una es por con para del se no"),
    "italian": _words("il di che e la per un una sono non del della gli con le si"),
    "portuguese": _words("o a os as e que de em um uma para com não do da no na"),
    "dutch": _words("de het een en van is dat niet op te zijn met voor als die"),
    "swedish": _words("och att det som en på är av för med till den har inte om"),
    "danish": _words("og at det som en på er af for med til den har ikke jeg de"),
    "norwegian": _words("og at det som en på er av for med til den har ikke jeg ble"),
    "finnish": _words("ja on ei että se oli hän ovat mutta kuin myös tai joka ole"),
    "russian": _words("и в не на что с по как это он к но из у за от о"),  # noqa: RUF001
    "turkish": _words("ve bir bu da de için ile ne gibi daha çok olan ama ki"),
    "hungarian": _words("a az és hogy nem is egy meg van csak de már ez mint"),
}


_REGCONFIG = Regconfig()


_WORD = re.compile(r"\w+", re.UNICODE)
_PHRASE = re.compile(r'"([^"]+)"')


def detect_config(text: str) -> str:
    """The text-search configuration of ``text``'s language, by its commonest words.

    A document's language decides how its words are stemmed; a wrong guess only
    stems less well, so anything unclear stays ``simple`` (no stemming, no stopwords).
    """
    counts = dict.fromkeys(_STOPWORDS, 0)
    for word in _WORD.findall(text[:_DETECT_CHARS].lower()):
        for config, words in _STOPWORDS.items():
            if word in words:
                counts[config] += 1
    best = max(counts, key=lambda c: counts[c])
    ranked = sorted(counts.values(), reverse=True)
    if ranked[0] < _MIN_STOPWORDS or ranked[0] < 1.5 * ranked[1]:
        return DEFAULT_CONFIG
    return best


def detect_config_of(parsed: ParsedDocument) -> str:
    """:func:`detect_config` on the document's first blocks (enough to tell its language)."""
    sample: list[str] = []
    size = 0
    for block in parsed.blocks:
        sample.append(block.text)
        size += len(block.text)
        if size >= _DETECT_CHARS:
            break
    return detect_config("\n".join(sample))


def phrases(query: str) -> list[str]:
    """The query's quoted phrases, as written."""
    return [p.strip() for p in _PHRASE.findall(query) if p.strip()]


def outside_phrases(query: str) -> str:
    """The query's words outside its quoted phrases."""
    return " ".join(_PHRASE.sub(" ", query).split())


IMPLICIT_PHRASE_WORDS = 5
"""An unquoted query of at least this many words is also looked for as written: a
sentence pasted from a document finds that document first."""


def exact_phrases(query: str) -> list[str]:
    """What a chunk must hold, as written, to rank first: the quoted phrases, or else the
    whole query when it is a sentence's length."""
    quoted = phrases(query)
    if quoted:
        return quoted
    whole = " ".join(query.replace('"', " ").split())
    return [whole] if len(whole.split()) >= IMPLICIT_PHRASE_WORDS else []


@dataclass(frozen=True)
class Filters:
    """What a search may return, applied inside the index walk (not after it)."""

    document_ids: Sequence[uuid.UUID] | None = None
    external_ids: Sequence[str] | None = None
    sources: Sequence[str] | None = None  # prefixes of the synced source (``ragstream sync``)
    content_types: Sequence[str] | None = None
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Per key: a string (equal), a list (any of), or ``{"prefix": "..."}``."""

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.document_ids is not None:
            found.append(Document.id.in_(list(self.document_ids)))
        if self.external_ids is not None:
            found.append(Document.external_id.in_(list(self.external_ids)))
        if self.sources is not None:
            # The synced source (a directory or s3:// prefix) the document came from.
            found.append(
                exists().where(
                    SyncObject.document_id == Document.id,
                    or_(
                        false(),
                        *(SyncObject.source.startswith(s, autoescape=True) for s in self.sources),
                    ),
                )
            )
        if self.content_types is not None:
            found.append(Document.content_type.in_(list(self.content_types)))
        if self.uploaded_after is not None:
            found.append(Document.uploaded_at >= self.uploaded_after)
        if self.uploaded_before is not None:
            found.append(Document.uploaded_at < self.uploaded_before)
        for key, wanted in self.metadata.items():
            value = Document.metadata_[key].astext
            if isinstance(wanted, Mapping) and set(wanted) == {"prefix"}:
                found.append(value.startswith(str(wanted["prefix"]), autoescape=True))
            elif isinstance(wanted, list | tuple):
                found.append(value.in_([str(v) for v in wanted]))
            else:
                found.append(Document.metadata_.contains({key: wanted}))
        return found


def searchable(tenant: str, filters: Filters) -> list[ColumnElement[bool]]:
    """The tenant's complete documents that pass ``filters``."""
    return [
        Document.tenant == tenant,
        Document.status == DocumentStatus.COMPLETE.value,
        *filters.clauses(),
    ]


def tenant_configs(conn: Connection, tenant: str) -> list[str]:
    """The text-search configurations the tenant's chunks were indexed with.

    A skip scan of ``(tenant, text_search_config)``: one index probe per
    configuration, however many documents the tenant has.
    """
    rows = conn.execute(
        text(
            "WITH RECURSIVE found AS ("
            " (SELECT text_search_config AS config FROM documents"
            "  WHERE tenant = :tenant AND text_search_config IS NOT NULL"
            "  ORDER BY text_search_config LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT d.text_search_config FROM documents d"
            "  WHERE d.tenant = :tenant AND d.text_search_config > found.config"
            "  ORDER BY d.text_search_config LIMIT 1)"
            " FROM found WHERE found.config IS NOT NULL"
            ") SELECT config::text FROM found WHERE config IS NOT NULL"
        ),
        {"tenant": tenant},
    ).scalars()
    return sorted({DEFAULT_CONFIG, *rows})


def keyword_query(
    conn: Connection,
    query: str,
    *,
    tenant: str,
    filters: Filters,
    limit: int,
    configs: Sequence[str] | None = None,
) -> Select[Any]:
    """Chunk ids and ``ts_rank_cd`` (normalised below 1) of the matches, best first.

    One ``tsquery`` per configuration in use, each matched only against the
    chunks indexed with it, so every match is a GIN index lookup.
    """
    if configs is None:
        configs = tenant_configs(conn, tenant)
    matches = []
    ranks = []
    for config in configs:
        tsquery = func.websearch_to_tsquery(literal(config).cast(_REGCONFIG), query)
        same = ChunkBuffer.text_search_config == literal(config).cast(_REGCONFIG)
        matches.append(and_(same, ChunkBuffer.text_search.bool_op("@@")(tsquery)))
        ranks.append((same, func.ts_rank_cd(ChunkBuffer.text_search, tsquery, 32)))
    rank = case(*ranks, else_=0.0)
    return (
        select(ChunkBuffer.id, rank.label("score"))
        .join(Document, Document.id == ChunkBuffer.document_id)
        .where(or_(*matches), *searchable(tenant, filters))
        .order_by(rank.desc(), ChunkBuffer.id)
        .limit(limit)
    )


def holding(
    conn: Connection, chunk_ids: Iterable[uuid.UUID], texts: Sequence[str]
) -> set[uuid.UUID]:
    """Which of ``chunk_ids`` hold every one of ``texts`` as written (case aside)."""
    ids = list(chunk_ids)
    if not ids or not texts:
        return set()
    found = conn.execute(
        select(ChunkBuffer.id).where(
            ChunkBuffer.id.in_(ids),
            *(ChunkBuffer.text.icontains(t, autoescape=True) for t in texts),
        )
    )
    return set(found.scalars())


def fuse(
    rankings: Sequence[Sequence[tuple[uuid.UUID, float]]],
    weights: Sequence[float],
    *,
    k: int = RRF_K,
) -> list[tuple[uuid.UUID, float]]:
    """Reciprocal rank fusion, each term scaled by the hit's score relative to its ranking's best.

    A chunk's score is ``sum(weight * score / best / (k + rank))``: plain RRF when a
    ranking's scores are close (cosines usually are), while a keyword match far weaker
    than the best one (a few scattered words against the whole sentence) adds little.
    Best first, ties by id.
    """
    scores: dict[uuid.UUID, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        best = max((score for _, score in ranking), default=0.0)
        for rank, (chunk_id, score) in enumerate(ranking, 1):
            relative = max(score, 0.0) / best if best > 0 else 1.0
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * relative / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], str(item[0])))


def set_iterative_scan(conn: Connection) -> None:
    """Filters are applied while the HNSW index is walked, so a selective one still
    returns k hits (pgvector >= 0.8)."""
    conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
