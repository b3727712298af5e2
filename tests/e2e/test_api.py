"""Upload through the API, follow the job, then find the document by searching its own words.

The workers are real ``ragstream worker`` processes; the API runs under uvicorn.
Prints the upload->complete latency of one small document (hash embedder).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragstream.settings import Settings
from tests.integration.test_api_server import ApiServer, serve, upload
from tests.pipeline import Workers

pytestmark = pytest.mark.e2e

NOTE = (
    b"# Lighthouse keeping\n\n"
    b"The keeper trims the wick at dusk, winds the clockwork that turns the lens, and logs "
    b"every passing schooner in the ledger by the stair.\n\n"
    b"## Storms\n\n"
    b"When the gale comes in from the north-east the keeper sounds the foghorn every ninety "
    b"seconds and watches the reef for lanterns of ships in distress.\n"
)


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings)


@pytest.fixture
def workers(api: ApiServer, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(api.settings, tmp_path / "logs")
    running.start_all()
    yield running
    running.stop_all()


def _until_complete(client: httpx.Client, job_url: str, workers: Workers, timeout_s: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(job_url).json()
        if job["status"] in ("complete", "failed"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"job still {job['status']}\n{workers.logs()}"
        time.sleep(0.02)


def test_upload_poll_complete_then_search_finds_it_first(api: ApiServer, workers: Workers) -> None:
    with api.client() as client:
        # Warm-up: the workers join their groups and load what they need.
        warm = upload(client, ("warm-up.md", b"# Warm up\n\nA first note to start the workers."))
        _until_complete(client, warm.json()["documents"][0]["status_url"], workers, 180)

        latencies = []
        documents = [
            (f"log-{i}.md", f"# Log {i}\n\nEntry {i}: {word} weather, {i} ships.\n".encode())
            for i, word in enumerate(("calm", "misty", "windy", "bright"))
        ] + [("lighthouse.md", NOTE)]
        for document in documents:
            started = time.monotonic()
            answer = upload(client, document)
            assert answer.status_code == 202, answer.text
            accepted = answer.json()["documents"][0]
            job = _until_complete(client, accepted["status_url"], workers, 120)
            latencies.append(time.monotonic() - started)
            assert job["status"] == "complete", job
            assert job["chunks_total"] == job["chunks_embedded"] >= 1

        # A query taken from the last document's text: its chunk comes first.
        chunks = client.get(f"{accepted['document_url']}/chunks").json()["items"]
        target = next(c for c in chunks if "foghorn" in c["text"])
        query = "the keeper sounds the foghorn every ninety seconds and watches the reef"
        hits = client.post("/v1/search", json={"query": query, "k": 5}).json()["hits"]
        assert hits, "search found nothing"
        assert hits[0]["chunk_id"] == target["chunk_id"], hits[0]
        assert hits[0]["document_id"] == accepted["document_id"]
        assert hits[0]["heading_path"] == ["Lighthouse keeping", "Storms"]
        assert hits[0]["score"] > max(h["score"] for h in hits[1:])
    print(
        f"api e2e: upload->complete of one small document (hash embedder): "
        f"median {statistics.median(latencies) * 1000:.0f} ms, min {min(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} documents"
    )
