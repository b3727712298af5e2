"""Document versions by ``external_id``: the new version replaces the old one atomically."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.settings import Settings
from tests.integration.test_api_documents import run_stages
from tests.integration.test_api_server import ApiServer, serve, upload

pytestmark = pytest.mark.integration

V1 = b"# Ferry timetable\n\nThe morning ferry leaves the north pier at seven and returns by nine."
V2 = b"# Ferry timetable\n\nFrom May the ferry sails from the south jetty at eight, back at ten."


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings)


def _rows(settings: Settings, document_id: str) -> dict[str, int]:
    engine = make_engine(settings)
    key = uuid.UUID(document_id)
    with engine.connect() as conn:
        found = {
            "documents": conn.execute(
                select(func.count()).select_from(Document).where(Document.id == key)
            ).scalar_one(),
            **{
                model.__tablename__: conn.execute(
                    select(func.count()).select_from(model).where(model.document_id == key)
                ).scalar_one()
                for model in (ChunkBuffer, VectorBuffer)
            },
        }
    engine.dispose()
    return found


def _search(api: ApiServer, query: str) -> set[str]:
    with api.client() as client:
        hits = client.post("/v1/search", json={"query": query, "k": 10}).json()["hits"]
    return {h["document_id"] for h in hits}


def test_a_new_version_is_built_alongside_and_replaces_the_old_one_at_once(
    api: ApiServer,
) -> None:
    with api.client() as client:
        first = upload(client, ("ferry.md", V1), external_id="wiki/ferry").json()["documents"][0]
        assert first["version"] == 1 and first["external_id"] == "wiki/ferry"
        run_stages(api.settings, documents=1)
        v1 = first["document_id"]
        assert _search(api, "morning ferry north pier") == {v1}

        answer = upload(client, ("ferry.md", V2), external_id="wiki/ferry")
        assert answer.status_code == 202, answer.text
        second = answer.json()["documents"][0]
        v2 = second["document_id"]
        assert second["version"] == 2 and v2 != v1
        job = client.get(second["status_url"]).json()
        assert [(v["version"], v["status"], v["current"]) for v in job["versions"]] == [
            (1, "complete", True),
            (2, "uploaded", False),
        ]

        # v2 is parsed, chunked and embedded, not yet finalized: search still sees only v1.
        for stage in ("parse", "chunk"):
            build_runner(api.settings, stage).run(max_messages=1, idle_timeout_s=20)
        chunks = _rows(api.settings, v2)["document_chunk_buffer"]
        build_runner(api.settings, "embed").run(max_messages=chunks, idle_timeout_s=20)
        assert _rows(api.settings, v2)["document_vector_buffer"] == chunks > 0
        assert _search(api, "south jetty in May") == {v1}
        in_flight = client.get(second["status_url"]).json()["versions"]
        assert [(v["status"], v["current"]) for v in in_flight] == [
            ("complete", True),
            ("embedding", False),
        ]

        # Finalizing v2 makes it current and removes v1 in the same transaction.
        build_runner(api.settings, "finalize").run(max_messages=chunks, idle_timeout_s=20)
        assert _search(api, "south jetty in May") == {v2}
        assert _search(api, "morning ferry north pier") == {v2}
        assert _rows(api.settings, v1) == {
            "documents": 0,
            "document_chunk_buffer": 0,
            "document_vector_buffer": 0,
        }
        done = client.get(second["status_url"]).json()
        assert [(v["version"], v["current"]) for v in done["versions"]] == [(2, True)]
        listed = client.get("/v1/documents", params={"external_id": "wiki/ferry"}).json()
        assert [d["document_id"] for d in listed["items"]] == [v2]

        # The same content again is the same version, not a third one.
        again = upload(client, ("ferry.md", V2), external_id="wiki/ferry")
        assert again.status_code == 200
        assert again.json()["documents"][0]["document_id"] == v2


def test_a_failed_new_version_leaves_the_current_one_searchable(api: ApiServer) -> None:
    with api.client() as client:
        first = upload(client, ("ferry.md", V1), external_id="wiki/ferry").json()["documents"][0]
        run_stages(api.settings, documents=1)
        broken = b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n truncated"
        second = upload(client, ("ferry.pdf", broken), external_id="wiki/ferry")
        assert second.status_code == 202
        build_runner(api.settings, "parse").run(max_messages=1, idle_timeout_s=20)
        job = client.get(second.json()["documents"][0]["status_url"]).json()
        assert job["status"] == "failed" and job["error"]["stage"] == "parse"
        assert [(v["status"], v["current"]) for v in job["versions"]] == [
            ("complete", True),
            ("failed", False),
        ]
    assert _search(api, "morning ferry north pier") == {first["document_id"]}
