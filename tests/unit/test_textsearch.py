"""Keyword search's pure parts: the language guess, quoted phrases, fusion and filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from ragstream.db.models import Document
from ragstream.documents import Block, ParsedDocument
from ragstream.textsearch import (
    Filters,
    detect_config,
    detect_config_of,
    exact_phrases,
    fuse,
    outside_phrases,
    phrases,
)


@pytest.mark.parametrize(
    ("text", "config"),
    [
        (
            "The consumer commits its offsets after the transaction is written to the database.",
            "english",
        ),
        (
            "Der Verbraucher schreibt die Offsets, und das ist nicht mit dem Broker von sich auf.",
            "german",
        ),
        (
            "Le consommateur valide les offsets dans la base et pour les partitions qui sont "
            "sur le disque.",
            "french",
        ),
        (
            "El consumidor confirma los offsets de la base y que no se pierden en el disco "
            "con los datos.",
            "spanish",
        ),
        (
            "Потребитель и брокер не знают, что в этом разделе как он был на диске, "
            "но это по плану.",
            "russian",
        ),
        ("東京は日本の首都であり、世界最大級の都市圏を形成している。", "simple"),
        ("kafka broker partition offset", "simple"),  # too few words to tell
        ("", "simple"),
    ],
)
def test_the_language_picks_the_configuration(text: str, config: str) -> None:
    assert detect_config(text) == config


def test_the_document_language_comes_from_its_first_blocks() -> None:
    german = (
        "Die Daten werden in der Datenbank gespeichert, und das ist nicht mit dem Netz verbunden."
    )
    parsed = ParsedDocument(
        blocks=(Block(text=german), *(Block(text="x " * 50) for _ in range(1000))),
        content_type="text/plain",
        parser="text",
        parser_version="1",
    )
    assert detect_config_of(parsed) == "german"


def test_quoted_phrases_are_kept_as_written() -> None:
    assert phrases('error "connection refused" on "port 5432" now') == [
        "connection refused",
        "port 5432",
    ]
    assert phrases("no quotes") == [] and phrases('""') == []
    assert outside_phrases('error "connection refused" on "port 5432" now') == "error on now"
    assert outside_phrases('"only this"') == ""


def test_exact_phrases_are_the_quoted_ones_else_a_sentence_length_query() -> None:
    assert exact_phrases('a "red button" b') == ["red button"]
    assert exact_phrases("two words") == []
    assert exact_phrases('the  ferry leaves\nthe "north pier') == [
        "the ferry leaves the north pier"
    ]


def test_reciprocal_rank_fusion_rewards_agreement_and_honours_weights() -> None:
    a, b, c, d = (uuid.UUID(int=i) for i in range(1, 5))

    def same(*ids: uuid.UUID) -> list[tuple[uuid.UUID, float]]:
        return [(i, 0.5) for i in ids]

    fused = fuse([same(a, b, c), same(c, a, d)], [1.0, 1.0])
    assert [chunk for chunk, _ in fused] == [a, c, b, d]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    keyword_only = fuse([same(a, b), same(b, a)], [0.0, 1.0])
    assert keyword_only[0][0] == b
    # A keyword match far weaker than the best adds little: b (vector 1st, a weak keyword
    # 2nd) falls behind a (the strong keyword match, vector 3rd).
    scored = fuse([same(b, c, a), [(a, 0.9), (b, 0.09)]], [1.0, 1.0])
    assert [chunk for chunk, _ in scored][:2] == [a, b]


def _sql(filters: Filters) -> tuple[str, list[object]]:
    compiled = select(Document.id).where(*filters.clauses()).compile(dialect=postgresql.dialect())
    return str(compiled), list(compiled.params.values())


def test_filters_become_where_clauses() -> None:
    sql, params = _sql(
        Filters(
            external_ids=["handbook"],
            content_types=["application/pdf"],
            uploaded_after=datetime(2026, 1, 1, tzinfo=UTC),
            metadata={"team": "search", "region": ["eu", "us"], "path": {"prefix": "docs/"}},
        )
    )
    assert "documents.external_id IN (__[POSTCOMPILE_external_id_1])" in sql
    assert "documents.content_type IN (__[POSTCOMPILE_content_type_1])" in sql
    assert "documents.uploaded_at >= %(uploaded_at_1)s" in sql
    assert "documents.metadata @> %(metadata_1)s" in sql
    assert "(documents.metadata ->> %(metadata_2)s::TEXT) IN (__[POSTCOMPILE_param_1])" in sql
    assert "(documents.metadata ->> %(metadata_3)s::TEXT) LIKE %(param_2)s::VARCHAR" in sql
    assert ["handbook"] in params and ["eu", "us"] in params and {"team": "search"} in params
    assert "docs//" in params  # the prefix with LIKE's escape character escaped
    assert "path" in params and "region" in params
    assert _sql(Filters())[0].endswith("FROM documents")
