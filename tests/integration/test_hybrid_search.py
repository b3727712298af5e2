"""Vector, keyword and hybrid search over documents that went through the pipeline.

The documents are built so that each mode's strength shows: an error code
and a German sentence (found by their words), a quoted phrase that two
documents share the words of but only one holds as written, and metadata,
external ids and types to filter on. Everything runs against the real broker
and database, through the HTTP API and the CLI as a user would call them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from ragstream.cli import app
from ragstream.db.engine import make_engine
from ragstream.db.models import Document
from ragstream.embedding import make_embedder
from ragstream.search import BadCursor, search
from ragstream.settings import Settings
from ragstream.textsearch import Filters
from tests import corpus
from tests.integration.test_api_documents import run_stages
from tests.integration.test_api_server import ApiServer, serve
from tests.pipeline import prepare, settings_env

pytestmark = pytest.mark.integration

CODE = "ERR_QUOTA_7731"
HANDBOOK = (
    "# Storage handbook\n\n"
    f"The upload is refused with {CODE} when the tenant's disk quota is exceeded; "
    "ask an operator to raise the quota or delete old versions.\n\n"
    "## Red button\n\nPress the red button, then the green lever, to open the hatch.\n"
)
SWAPPED = (
    "# Hatch notes\n\n"
    "Press the green button, then the red lever, to close the hatch for the night.\n"
)
GERMAN_SENTENCE = (
    "Die Fähre nach Ostrand fährt im Winter vom südlichen Steg ab, weil der Hafen zufriert."
)
GERMAN = (
    "Fahrplan\n\n"
    f"{GERMAN_SENTENCE} Im Sommer fährt sie vom nördlichen Steg und braucht vierzig Minuten. "
    "Die Tickets sind an der Kasse und auf dem Schiff zu haben, und der Hund fährt mit.\n"
)


@pytest.fixture(scope="module")
def stack(settings_module: Settings) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The documents through the four stages once; the tests only read."""
    settings = settings_module.model_copy(update={"tenant": "alpha"})  # the API's first key
    submitter = prepare(settings)
    ids = {
        "handbook": submitter.submit(
            HANDBOOK.encode(),
            filename="handbook.md",
            metadata={"team": "ops", "path": "docs/runbooks/storage"},
            external_id="wiki/handbook",
        ).document_id,
        "swapped": submitter.submit(
            SWAPPED.encode(),
            filename="hatch.md",
            metadata={"team": "dev", "path": "docs/notes/hatch"},
        ).document_id,
        "german": submitter.submit(
            GERMAN.encode(), filename="fahrplan.txt", metadata={"team": "travel"}
        ).document_id,
    }
    filler = corpus.mixed(6, seed=91)
    for name, data in filler:
        submitter.submit(data, filename=name, metadata={"team": "filler"})
    run_stages(settings, documents=len(ids) + len(filler))
    yield settings, {name: str(value) for name, value in ids.items()}


def _search(settings: Settings, query: str, **kwargs: object) -> list[str]:
    engine = make_engine(settings)
    embedder = make_embedder(settings)
    try:
        page = search(engine, embedder, query, tenant=settings.tenant, **kwargs)  # type: ignore[arg-type]
        return [str(h.document_id) for h in page.hits]
    finally:
        embedder.close()
        engine.dispose()


def test_each_document_got_its_languages_text_search_configuration(
    stack: tuple[Settings, dict[str, str]],
) -> None:
    settings, ids = stack
    engine = make_engine(settings)
    with engine.connect() as conn:
        configs = dict(
            conn.execute(select(Document.id, Document.text_search_config)).tuples().all()
        )
    engine.dispose()
    assert {str(k): v for k, v in configs.items()}[ids["german"]] == "german"
    assert {str(k): v for k, v in configs.items()}[ids["handbook"]] == "english"


def test_an_error_code_and_a_german_sentence_are_found_by_their_words(
    stack: tuple[Settings, dict[str, str]],
) -> None:
    settings, ids = stack
    for mode in ("keyword", "hybrid"):
        assert _search(settings, CODE, mode=mode)[0] == ids["handbook"], mode
        assert _search(settings, GERMAN_SENTENCE, mode=mode)[0] == ids["german"], mode
    # A keyword search finds only chunks holding every word; an unknown code finds nothing.
    assert _search(settings, "ERR_QUOTA_0000", mode="keyword") == []
    # Stemmed the German way: an inflected form finds the German chunk.
    assert _search(settings, "Fähren Stegen", mode="keyword")[0] == ids["german"]


def test_a_quoted_phrase_ranks_the_chunk_that_holds_it_first_whatever_the_weights(
    stack: tuple[Settings, dict[str, str]],
) -> None:
    settings, ids = stack
    # Both documents hold "red", "green", "button" and "lever"; only one says "red button".
    unquoted = set(_search(settings, "red button green lever", mode="keyword", k=10))
    assert {ids["handbook"], ids["swapped"]} <= unquoted
    # By meaning this query is the other document's (the precondition), but it quotes a
    # phrase only the handbook holds: hybrid puts the handbook first, even by vector alone.
    query = '"red button" green lever close the hatch for the night'
    assert _search(settings, query, mode="vector")[0] == ids["swapped"]
    for weights in ((1.0, 1.0), (1.0, 0.0)):
        found = _search(settings, query, mode="hybrid", weights=weights)
        assert found[0] == ids["handbook"], weights
    found = _search(settings, '"green button"', mode="keyword")
    assert found == [ids["swapped"]]


def test_filters_apply_inside_the_walk(stack: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = stack
    for mode in ("vector", "keyword", "hybrid"):
        only_ops = Filters(metadata={"team": "ops"})
        assert set(_search(settings, "hatch button", mode=mode, filters=only_ops)) <= {
            ids["handbook"]
        }, mode
    # A selective filter still returns k hits in vector mode (the iterative index scan).
    filler = Filters(metadata={"team": "filler"})
    assert len(_search(settings, "the", mode="vector", k=8, filters=filler)) == 8
    cases = {
        "in": Filters(metadata={"team": ["ops", "dev"]}),
        "prefix": Filters(metadata={"path": {"prefix": "docs/"}}),
    }
    for name, filters in cases.items():
        found = set(_search(settings, "press the button", mode="hybrid", k=20, filters=filters))
        assert found == {ids["handbook"], ids["swapped"]}, name
    by_external = Filters(external_ids=["wiki/handbook"])
    assert set(_search(settings, "hatch", k=20, filters=by_external)) == {ids["handbook"]}
    by_type = Filters(content_types=["text/plain"])
    assert ids["german"] in _search(settings, "Fähre", mode="keyword", filters=by_type)
    assert _search(settings, "Fähre", mode="keyword", filters=Filters(content_types=["x/y"])) == []
    future = Filters(uploaded_after=datetime.now(UTC) + timedelta(days=1))
    assert _search(settings, "hatch", filters=future) == []
    past = Filters(uploaded_before=datetime.now(UTC) + timedelta(days=1))
    assert _search(settings, "hatch", filters=past)
    by_id = Filters(document_ids=[ids["swapped"]])  # type: ignore[list-item]
    assert set(_search(settings, "red button", k=20, filters=by_id)) == {ids["swapped"]}


def test_pages_by_cursor_continue_the_same_ranking(
    stack: tuple[Settings, dict[str, str]],
) -> None:
    settings, _ = stack
    engine = make_engine(settings)
    embedder = make_embedder(settings)
    try:
        whole = search(engine, embedder, "the ferry hatch", tenant=settings.tenant, k=6)
        first = search(engine, embedder, "the ferry hatch", tenant=settings.tenant, k=3)
        assert first.next_cursor
        second = search(
            engine,
            embedder,
            "the ferry hatch",
            tenant=settings.tenant,
            k=3,
            cursor=first.next_cursor,
        )
        assert [h.chunk_id for h in first.hits + second.hits] == [h.chunk_id for h in whole.hits]
        with pytest.raises(BadCursor, match="another search"):
            search(engine, embedder, "other", tenant=settings.tenant, cursor=first.next_cursor)
        with pytest.raises(BadCursor, match="not one this API gave out"):
            search(engine, embedder, "other", tenant=settings.tenant, cursor="garbage!")
    finally:
        embedder.close()
        engine.dispose()


@pytest.fixture(scope="module")
def api(stack: tuple[Settings, dict[str, str]]) -> Iterator[ApiServer]:
    yield from serve(stack[0])


def test_the_api_searches_by_mode_with_filters_weights_and_cursor(
    api: ApiServer, stack: tuple[Settings, dict[str, str]]
) -> None:
    _, ids = stack
    with api.client() as client:
        found = client.post("/v1/search", json={"query": CODE, "mode": "keyword"})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["mode"] == "keyword" and body["model"] is None
        assert body["hits"][0]["document_id"] == ids["handbook"]
        assert body["hits"][0]["keyword_rank"] == 1 and body["hits"][0]["vector_rank"] is None
    with api.client("beta") as other_tenant:  # another tenant's key finds none of them
        found = other_tenant.post("/v1/search", json={"query": CODE, "mode": "hybrid"})
        assert found.status_code == 200 and found.json()["hits"] == []
    with api.client() as client:
        asked = {
            "query": "press the button",
            "k": 1,
            "vector_weight": 0.5,
            "keyword_weight": 2,
            "metadata": {"path": {"prefix": "docs/"}, "team": ["ops", "dev"]},
        }
        hybrid = client.post("/v1/search", json=asked).json()
        assert hybrid["mode"] == "hybrid" and hybrid["model"]
        assert hybrid["hits"][0]["document_id"] in {ids["handbook"], ids["swapped"]}
        following = client.post(
            "/v1/search", json={**asked, "cursor": hybrid["next_cursor"]}
        ).json()
        assert following["hits"][0]["chunk_id"] != hybrid["hits"][0]["chunk_id"]

        other = client.post(
            "/v1/search", json={"query": "something else", "cursor": hybrid["next_cursor"]}
        )
        assert other.status_code == 400 and "another search" in other.json()["detail"]
        bad_mode = client.post("/v1/search", json={"query": "x", "mode": "fuzzy"})
        assert bad_mode.status_code == 422
        no_weight = client.post(
            "/v1/search", json={"query": "x", "vector_weight": 0, "keyword_weight": 0}
        )
        assert no_weight.status_code == 400 and "weights" in no_weight.json()["detail"]


def test_the_cli_takes_mode_and_filters(stack: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = stack
    env = settings_env(settings)
    cli = CliRunner()
    found = cli.invoke(app, ["search", CODE, "--mode", "keyword", "--json"], env=env)
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)[0]["document_id"] == ids["handbook"]
    filtered = cli.invoke(
        app, ["search", "hatch", "--meta", "path=docs/notes*", "--json", "--k", "10"], env=env
    )
    assert filtered.exit_code == 0, filtered.output
    assert {h["document_id"] for h in json.loads(filtered.stdout)} == {ids["swapped"]}
    wrong = cli.invoke(app, ["search", "x", "--mode", "fuzzy"], env=env)
    assert wrong.exit_code == 2 and "vector, keyword, hybrid" in wrong.output
