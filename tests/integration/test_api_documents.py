"""Documents through the API on the real broker and database: every status code of the issue."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob, ChunkBuffer, Document, VectorBuffer
from ragstream.settings import Settings
from tests import corpus
from tests.conftest import Stack
from tests.integration.test_api_server import ApiServer, serve, upload
from tests.pipeline import read_topic, table_counts

pytestmark = pytest.mark.integration


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings)


def run_stages(settings: Settings, documents: int) -> None:
    """The four stages in this process, each until it has handled what the previous produced."""
    for stage in ("parse", "chunk"):
        stats = build_runner(settings, stage).run(max_messages=documents, idle_timeout_s=20)
        assert stats.processed + stats.failed == documents, (stage, stats)
    engine = make_engine(settings)
    with engine.connect() as conn:
        chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
    engine.dispose()
    for stage in ("embed", "finalize"):
        stats = build_runner(settings, stage).run(max_messages=chunks, idle_timeout_s=20)
        assert stats.processed == chunks, (stage, stats)


def _without_lineage(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lineage = {"source_topic", "source_partition", "source_offset"}
    return [
        {
            **chunk,
            "vectors": [
                {k: v for k, v in vector.items() if k not in lineage} for vector in chunk["vectors"]
            ],
        }
        for chunk in chunks
    ]


def test_upload_202_then_same_content_200_with_no_new_rows(api: ApiServer) -> None:
    name, data = corpus.mixed(1, seed=21)[0]
    with api.client() as client:
        first = upload(client, (name, data), metadata=json.dumps({"source": "wiki"}))
        assert first.status_code == 202, first.text
        accepted = first.json()["documents"][0]
        assert accepted["created"] is True and accepted["status"] == "uploaded"
        assert accepted["status_url"] == f"/v1/jobs/{accepted['job_id']}"
        # 202 means acknowledged: the event is on the topic already.
        (event,) = read_topic(api.settings, topology.UPLOADED, expect=1)
        assert event.key().decode() == accepted["document_id"]  # type: ignore[attr-defined]
        counts = table_counts(api.settings)
        again = upload(client, (name, data))
        assert again.status_code == 200, again.text
        repeated = again.json()["documents"][0]
        assert repeated["document_id"] == accepted["document_id"]
        assert repeated["job_id"] == accepted["job_id"] and repeated["created"] is False
        assert table_counts(api.settings) == counts
        document = client.get(accepted["document_url"]).json()
    assert document["metadata"] == {"source": "wiki"}
    assert document["status"] == "uploaded" and document["filename"] == name


def test_bad_form_input_is_422(api: ApiServer) -> None:
    with api.client() as client:
        no_file = client.post("/v1/documents", files={"parser": (None, "local")})
        wrong_field = client.post("/v1/documents", files={"attachment": ("x.txt", b"abc")})
        bad_parser = upload(client, ("a.txt", b"some words here"), parser="magic")
        bad_metadata = upload(client, ("a.txt", b"some words here"), metadata="[1, 2]")
        empty = upload(client, ("a.txt", b""))
        not_multipart = client.post("/v1/documents", json={"url": "http://x"})
    assert no_file.status_code == 422 and "no file" in no_file.text
    assert wrong_field.status_code == 400 and "'file'" in wrong_field.text
    assert bad_parser.status_code == 422 and "parser" in bad_parser.text
    assert bad_metadata.status_code == 422 and "metadata" in bad_metadata.text
    assert empty.status_code == 422 and "empty" in empty.text
    assert not_multipart.status_code == 415


def test_progress_documents_chunks_and_search_after_the_pipeline(api: ApiServer) -> None:
    files = corpus.mixed(4, seed=22)
    with api.client() as client:
        answer = upload(client, *files, metadata=json.dumps({"batch": "b1"}))
        assert answer.status_code == 202, answer.text
        accepted = answer.json()["documents"]
        assert len(accepted) == 4
        job = client.get(accepted[0]["status_url"]).json()
        assert job["status"] == "uploaded" and job["current_stage"] == "parse"
        assert job["chunks_total"] is None and job["chunks_embedded"] == 0

        run_stages(api.settings, documents=4)

        for item in accepted:
            job = client.get(item["status_url"]).json()
            assert job["status"] == "complete", job
            assert job["current_stage"] is None and job["error"] is None
            assert job["chunks_total"] == job["chunks_embedded"] > 0
            for stage in ("parse", "chunk", "embed", "total"):
                timing = job["stages"][stage]
                assert timing["duration_s"] is not None and timing["duration_s"] >= 0, stage
            assert job["stages"]["total"]["duration_s"] >= job["stages"]["parse"]["duration_s"]
        listed = client.get("/v1/documents", params={"status": "complete", "limit": 3}).json()
        assert listed["total"] == 4 and len(listed["items"]) == 3
        rest = client.get("/v1/documents", params={"status": "complete", "offset": 3}).json()
        ids = {d["document_id"] for d in listed["items"] + rest["items"]}
        assert ids == {a["document_id"] for a in accepted}
        assert client.get("/v1/documents", params={"status": "failed"}).json()["total"] == 0
        assert client.get("/v1/documents", params={"status": "nonsense"}).status_code == 422

        pdf = next(a for a in accepted if a["content_type"] == "application/pdf")
        page = client.get(f"{pdf['document_url']}/chunks", params={"limit": 2}).json()
        assert page["total"] >= 1 and len(page["items"]) == min(2, page["total"])
        assert [c["chunk_index"] for c in page["items"]] == list(range(len(page["items"])))
        assert all(c["pages"] and c["pages"][0] >= 1 for c in page["items"])
        markdown = next(a for a in accepted if a["content_type"] == "text/markdown")
        md_chunks = client.get(f"{markdown['document_url']}/chunks").json()["items"]
        assert any(c["heading_path"] for c in md_chunks)

        # A query taken from a chunk's text finds that chunk first.
        target = md_chunks[-1]
        query = " ".join(target["text"].split()[:40])
        found = client.post("/v1/search", json={"query": query, "k": 3}).json()
        assert found["model"] == "hash-384"
        assert found["hits"][0]["chunk_id"] == target["chunk_id"]
        assert found["hits"][0]["score"] == pytest.approx(max(h["score"] for h in found["hits"]))
        only = client.post(
            "/v1/search",
            json={"query": query, "k": 10, "document_ids": [pdf["document_id"]]},
        ).json()
        assert {h["document_id"] for h in only["hits"]} == {pdf["document_id"]}
        by_metadata = client.post(
            "/v1/search", json={"query": query, "metadata": {"batch": "b1"}}
        ).json()
        assert by_metadata["hits"]
        none = client.post(
            "/v1/search", json={"query": query, "metadata": {"batch": "other"}}
        ).json()
        assert none["hits"] == []
        named = client.post("/v1/search", json={"query": query, "model": "hash"}).json()
        assert named["model"] == "hash-384"
        assert [h["chunk_id"] for h in named["hits"][:3]] == [h["chunk_id"] for h in found["hits"]]
        unknown = client.post("/v1/search", json={"query": query, "model": "word2vec"})
        assert unknown.status_code == 422 and "unknown model" in unknown.json()["detail"]
        assert client.post("/v1/search", json={"query": "", "k": 3}).status_code == 422
        assert client.post("/v1/search", json={"query": "x", "k": 0}).status_code == 422


def test_another_tenant_sees_nothing_and_gets_404(api: ApiServer) -> None:
    name, data = corpus.mixed(1, seed=23)[0]
    with api.client("alpha") as alpha, api.client("beta") as beta:
        mine = upload(alpha, (name, data)).json()["documents"][0]
        run_stages(api.settings, documents=1)
        chunk = alpha.get(f"{mine['document_url']}/chunks").json()["items"][0]
        assert beta.get(mine["document_url"]).status_code == 404
        assert beta.get(f"{mine['document_url']}/chunks").status_code == 404
        assert beta.get(mine["status_url"]).status_code == 404
        assert beta.post(f"{mine['document_url']}/reprocess").status_code == 404
        assert beta.delete(mine["document_url"]).status_code == 404
        assert beta.get("/v1/documents").json()["total"] == 0
        assert beta.post("/v1/search", json={"query": chunk["text"]}).json()["hits"] == []
        assert alpha.post("/v1/search", json={"query": chunk["text"]}).json()["hits"]
        # The same bytes from the other tenant are the other tenant's own document.
        theirs = upload(beta, (name, data))
        assert theirs.status_code == 202
        assert theirs.json()["documents"][0]["document_id"] != mine["document_id"]


def test_reprocess_from_each_stage_is_a_new_job_with_the_same_result(api: ApiServer) -> None:
    name, data = corpus.mixed(1, seed=24)[0]
    with api.client() as client:
        accepted = upload(client, (name, data)).json()["documents"][0]
        url = accepted["document_url"]
        run_stages(api.settings, documents=1)
        before = table_counts(api.settings)
        chunks = client.get(f"{url}/chunks", params={"limit": 500}).json()["items"]
        jobs = {accepted["job_id"]}
        for stage in ("embed", "chunk", "parse"):
            started = client.post(f"{url}/reprocess", params={"from_stage": stage})
            assert started.status_code == 202, started.text
            job = started.json()
            assert job["job_id"] not in jobs
            jobs.add(job["job_id"])
            # While it waits, a repeat re-sends the same job; anything else is refused.
            again = client.post(f"{url}/reprocess", params={"from_stage": stage})
            assert again.status_code == 202 and again.json()["job_id"] == job["job_id"]
            other = "parse" if stage != "parse" else "chunk"
            assert client.post(f"{url}/reprocess", params={"from_stage": other}).status_code == 409
            assert client.delete(url).status_code == 409
            progress = client.get(job["status_url"]).json()
            assert progress["kind"] == "reprocess" and progress["from_stage"] == stage
            assert progress["chunks_embedded"] == 0
            # The repeat sent every event twice: each stage sees two copies, writes once.
            _run_from(api.settings, stage, messages=2, chunks=2 * len(chunks))
            done = client.get(job["status_url"]).json()
            assert done["status"] == "complete", done
            assert done["chunks_embedded"] == done["chunks_total"] == len(chunks)
            again_chunks = client.get(f"{url}/chunks", params={"limit": 500}).json()["items"]
            # The same chunks and vectors; only the vectors' lineage names the new events.
            assert _without_lineage(again_chunks) == _without_lineage(chunks)
        rows = table_counts(api.settings)
        assert rows["jobs"] == (4, 4)
        for table in ("documents", "document_chunk_buffer", "document_vector_buffer"):
            assert rows[table] == before[table], table
        unknown = client.post(f"/v1/documents/{uuid.uuid4()}/reprocess")
        assert unknown.status_code == 404
        bad = client.post(f"{url}/reprocess", params={"from_stage": "finalize"})
        assert bad.status_code == 422


def _run_from(settings: Settings, stage: str, messages: int, chunks: int) -> None:
    """Run the stages from ``stage`` on, each until it has read its share of the new events."""
    order = ["parse", "chunk", "embed", "finalize"]
    for name in order[order.index(stage) :]:
        expect = messages if name in ("parse", "chunk") else chunks
        # The groups resume from their committed offsets, so only the new events are read.
        stats = build_runner(settings, name).run(max_messages=expect, idle_timeout_s=20)
        assert stats.processed == expect, (name, stats)


def test_delete_removes_rows_blobs_and_tombstones_the_keys(api: ApiServer) -> None:
    (name, data), (other_name, other_data) = corpus.mixed(2, seed=25)
    with api.client() as client:
        accepted = upload(client, (name, data), (other_name, other_data)).json()["documents"]
        run_stages(api.settings, documents=2)
        gone, kept = accepted
        chunks = client.get(f"{gone['document_url']}/chunks", params={"limit": 500}).json()
        kept_chunks = client.get(f"{kept['document_url']}/chunks", params={"limit": 1}).json()
        answer = client.delete(gone["document_url"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["chunks_deleted"] == chunks["total"] > 0
        assert answer.json()["vectors_deleted"] == chunks["total"]
        assert client.get(gone["document_url"]).status_code == 404
        assert client.get(gone["status_url"]).status_code == 404
        assert client.delete(gone["document_url"]).status_code == 404
        assert client.get(kept["document_url"]).json()["status"] == "complete"
    engine = make_engine(api.settings)
    with engine.connect() as conn:
        document_id = uuid.UUID(gone["document_id"])
        for model in (ChunkBuffer, VectorBuffer):
            left = conn.execute(
                select(func.count()).select_from(model).where(model.document_id == document_id)
            ).scalar_one()
            assert left == 0, model
        blob = conn.execute(select(Document.sha256).where(Document.id == document_id)).first()
        assert blob is None
        assert conn.execute(select(func.count()).select_from(Blob)).scalar_one() == 2  # kept's
    engine.dispose()
    # Every key the document had now ends in a tombstone.
    chunk_ids = {c["chunk_id"] for c in chunks["items"]}
    messages = read_topic(
        api.settings,
        topology.CHUNKED,
        expect=2 * len(chunk_ids) + kept_chunks["total"],
        timeout_s=8,
    )
    tombstones = {m.key().decode() for m in messages if m.value() is None}  # type: ignore[attr-defined]
    assert chunk_ids <= tombstones
    # Each on the partition of the record it ends, so a compacted topic would drop both.
    partitions: dict[str, set[int]] = {}
    for m in messages:
        if m.key().decode() in chunk_ids:  # type: ignore[attr-defined]
            partitions.setdefault(m.key().decode(), set()).add(m.partition())  # type: ignore[attr-defined]
    assert all(len(p) == 1 for p in partitions.values()), partitions
    records = {  # what each topic holds: both documents' records, then the tombstone
        topology.UPLOADED: 2 + 1,
        topology.PARSED: 2 + 1,
        topology.EMBEDDED: chunks["total"] + kept_chunks["total"] + 1,
    }
    for topic, expect in records.items():
        last = [
            m
            for m in read_topic(api.settings, topic, expect=expect, timeout_s=5)
            if m.key().decode() == gone["document_id"]
        ][-1]  # type: ignore[attr-defined]
        assert last.value() is None, topic  # type: ignore[attr-defined]


def test_broker_down_is_503_with_retry_after_and_nothing_half_done(
    api: ApiServer, stack: Stack
) -> None:
    if stack.devstack is None:
        pytest.fail("this test stops the broker: it needs the native devstack")
    name, data = corpus.mixed(1, seed=26)[0]
    kafka = stack.devstack.kafka
    with api.client() as client:
        kafka.stop()
        try:
            started = time.monotonic()
            answer = upload(client, (name, data))
            waited = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) >= 1
            # The row and blob stay (below): the answer must not claim nothing was changed.
            assert "nothing was changed" not in answer.text
            assert "sent again safely" in answer.json()["detail"]
            assert waited < api.settings.api_publish_timeout_s + 20
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["broker"] != "ok"
        finally:
            kafka.start()
        # The row and the blob were committed before the publish, never an event without them.
        engine = make_engine(api.settings)
        with engine.connect() as conn:
            statuses = list(conn.execute(select(Document.status)).scalars())
            blobs = conn.execute(select(func.count()).select_from(Blob)).scalar_one()
        engine.dispose()
        assert statuses == ["uploaded"] and blobs == 1
        # The client retries: the same content is published again and flows on.
        deadline = time.monotonic() + 60
        while True:
            retry = upload(client, (name, data))
            if retry.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert retry.status_code == 200, retry.text
        assert retry.json()["documents"][0]["status"] == "uploaded"
        stats = build_runner(api.settings, "parse").run(max_messages=1, idle_timeout_s=20)
        assert stats.processed == 1
        assert client.get(retry.json()["documents"][0]["document_url"]).json()["status"] == "parsed"
