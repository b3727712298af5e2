"""Upload events from other services, published by a producer that is not ragstream
code (``examples/publish_upload_event.py``: confluent-kafka and the ``.avsc`` only),
against the real broker, database, S3 server and a local web server."""

from __future__ import annotations

import ast
import hashlib
import http.server
import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ragstream import topology
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import Document
from ragstream.deadletter import DeadLetter
from ragstream.devstack.s3proxy import S3Endpoint
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from tests.integration.test_api_server import serve
from tests.pipeline import new_bucket, prepare, read_topic, run_stages

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PRODUCER = ROOT / "examples" / "publish_upload_event.py"
REPORT = b"# Tide tables\n\nThe harbour's spring tides peak two days after the full moon.\n"
MANUAL = b"# Lock gates\n\nThe lock keeper opens the upper gates once the levels match.\n"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("publish_upload_event", PRODUCER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _publish(settings: Settings, uri: str, *args: str) -> None:
    argv = [uri, "--bootstrap", str(settings.kafka_bootstrap)]
    argv += ["--topic", settings.topic(topology.UPLOADED), "--tenant", settings.tenant, *args]
    assert _example().main(argv) == 0


def _documents(settings: Settings) -> list[Document]:
    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            documents = list(session.scalars(select(Document)))
            session.expunge_all()
            return documents
    finally:
        engine.dispose()


class _Site(http.server.BaseHTTPRequestHandler):
    """Serves /ok/moved (a redirect), /ok/busy (always 503) and any other path (the report)."""

    def do_GET(self) -> None:
        if self.path == "/ok/moved":
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/x")
            self.end_headers()
        elif self.path == "/ok/busy":
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(REPORT)))
            self.end_headers()
            self.wfile.write(REPORT)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_example_producer_imports_nothing_of_ragstream() -> None:
    tree = ast.parse(PRODUCER.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not isinstance(node, ast.ImportFrom) or node.module
    }
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"confluent_kafka", "fastavro"}


def test_an_object_put_into_s3_reaches_complete_through_an_external_event(
    settings: Settings, s3proxy: S3Endpoint
) -> None:
    s3, client, bucket = new_bucket(settings, s3proxy)
    client.put_object(Bucket=bucket, Key="reports/tides.md", Body=REPORT)
    prepare(s3).producer.close()

    # The producer as another service runs it: its own process, no ragstream import.
    run = subprocess.run(
        [
            *(sys.executable, "-I", str(PRODUCER), f"s3://{bucket}/reports/tides.md"),
            *("--bootstrap", str(s3.kafka_bootstrap), "--topic", s3.topic(topology.UPLOADED)),
            *("--tenant", s3.tenant, "--external-id", "reports/tides.md"),
            *("--sha256", hashlib.sha256(REPORT).hexdigest(), "--metadata", "team=harbour"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["blob_uri"] == f"s3://{bucket}/reports/tides.md"

    # The external event is admitted (read, stored, recorded), then parsed as an upload.
    stats = build_runner(s3, "parse").run(max_messages=2, idle_timeout_s=20)
    assert (stats.processed, stats.failed) == (2, 0)
    run_stages(s3, documents=1, after_parse=True)
    [document] = _documents(s3)
    assert document.status == DocumentStatus.COMPLETE.value
    assert document.sha256 == hashlib.sha256(REPORT).hexdigest()
    assert document.size_bytes == len(REPORT)
    assert document.external_id == "reports/tides.md"
    assert document.content_type == "text/markdown"
    assert document.metadata_ == {
        "team": "harbour",
        "source_uri": f"s3://{bucket}/reports/tides.md",
    }

    # A new version of the object under the same external id: the next version.
    edited = REPORT + b"\nNeap tides follow.\n"
    client.put_object(Bucket=bucket, Key="reports/tides.md", Body=edited)
    _publish(s3, f"s3://{bucket}/reports/tides.md", "--external-id", "reports/tides.md")
    build_runner(s3, "parse").run(max_messages=2, idle_timeout_s=20)
    run_stages(s3, documents=1, after_parse=True)
    versions = {d.version: d.status for d in _documents(s3)}
    assert versions == {2: DocumentStatus.COMPLETE.value}  # the old version was retired


def test_bad_external_events_end_failed_with_a_reason_and_in_the_dlq(
    settings: Settings, s3proxy: S3Endpoint, site: str
) -> None:
    s3, client, bucket = new_bucket(settings, s3proxy)
    s3 = s3.model_copy(
        update={
            "max_upload_bytes": 200,
            "external_url_allowlist": f"{site}/ok/",
            "max_batch_attempts": 2,
        }
    )
    client.put_object(Bucket=bucket, Key="big.txt", Body=b"word " * 100)
    client.put_object(Bucket=bucket, Key="fine.md", Body=MANUAL)
    prepare(s3).producer.close()
    bad = {
        "ftp://files.example.com/a.pdf": ("UnreadableObject", "unknown object URI"),
        f"s3://{bucket}/absent.md": ("UnreadableObject", "NoSuchKey"),
        f"s3://{bucket}/big.txt": ("ObjectTooLarge", "larger than the limit of 200 bytes"),
        f"{site}/elsewhere/a.md": ("UnreadableObject", "RAGSTREAM_EXTERNAL_URL_ALLOWLIST"),
        f"{site}/ok/moved": ("UnreadableObject", "redirect, not followed"),
        f"{site}/ok/../private.md": ("UnreadableObject", "RAGSTREAM_EXTERNAL_URL_ALLOWLIST"),
        f"{site.replace('//', '//ok@')}/ok/a.md": ("UnreadableObject", "ALLOWLIST"),
        f"{site}/ok/busy": ("RetriesExhausted", "HTTP 503"),  # retried, then given up
    }
    for uri in bad:
        _publish(s3, uri)
    _publish(s3, f"s3://{bucket}/fine.md", "--sha256", "0" * 64)  # another hash than its content
    _publish(s3, f"{site}/ok/report.md", "--size", str(len(REPORT) + 1))  # another size
    _publish(s3, f"{site}/ok/report.md")  # good, behind the bad ones
    _publish(s3, f"s3://{bucket}/fine.md")  # good

    stats = build_runner(s3, "parse").run(max_messages=len(bad) + 6, idle_timeout_s=20)
    assert (stats.processed, stats.failed) == (4, len(bad) + 2)
    run_stages(s3, documents=2, after_parse=True)
    documents = _documents(s3)
    complete = {d.metadata_["source_uri"] for d in documents if d.status == "complete"}
    assert complete == {f"{site}/ok/report.md", f"s3://{bucket}/fine.md"}
    failed = {d.metadata_["source_uri"]: d for d in documents if d.status == "failed"}
    assert len(failed) == len(bad) + 2
    for uri, (error_class, reason) in bad.items():
        document = failed[uri]
        assert document.sha256 is None and document.failed_stage == "parse"
        assert document.error_class == error_class, (uri, document.error_message)
        assert reason in (document.error_message or ""), (uri, document.error_message)
    for uri in (f"s3://{bucket}/fine.md", f"{site}/ok/report.md"):
        assert failed[uri].error_class == "ChecksumMismatch", failed[uri].error_message

    letters = read_topic(s3, topology.dlq(topology.UPLOADED), expect=len(bad) + 3, timeout_s=10)
    assert len(letters) == len(bad) + 2
    named = {DeadLetter.from_headers(m.headers() or []).document_id for m in letters}
    assert named == {d.id for d in failed.values()}


def _s3_record(event: str, bucket: str, key: str, size: int, sequencer: str) -> dict[str, object]:
    """One record as Amazon S3 sends it (event message structure, version 2.1)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-06T10:15:30.123Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "ragstream-ingest",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": key,
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                "sequencer": sequencer,
            },
        },
    }


def test_bucket_notifications_ingest_created_objects_and_delete_removed_ones(
    settings: Settings, s3proxy: S3Endpoint
) -> None:
    s3, client, bucket = new_bucket(settings, s3proxy)
    key = "harbour notes/tides & locks.md"  # S3 sends it URL-encoded: spaces as '+'
    encoded = "harbour+notes/tides+%26+locks.md"
    client.put_object(Bucket=bucket, Key=key, Body=REPORT)
    uri = f"s3://{bucket}/{key}"
    for api in serve(s3, poller=False):
        with api.client() as http:
            test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}
            assert http.post("/v1/notifications/s3", json=test_event).json()["ignored"] == 1
            assert http.post("/v1/notifications/s3", json={"hello": 1}).status_code == 400
            assert http.post("/v1/notifications/s3", content=b"not json").status_code == 400
            anonymous = http.post(
                "/v1/notifications/s3", json={"Records": []}, headers={"Authorization": ""}
            )
            assert anonymous.status_code == 401

            created = {
                "Records": [_s3_record("ObjectCreated:Put", bucket, encoded, len(REPORT), "0A1")]
            }
            answer = http.post("/v1/notifications/s3", json=created)
            assert answer.status_code == 202, answer.text
            assert answer.json()["uploads"] == 1
            build_runner(api.settings, "parse").run(max_messages=2, idle_timeout_s=20)
            run_stages(api.settings, documents=1, after_parse=True)
            [document] = _documents(s3)
            assert (document.status, document.external_id) == ("complete", uri)
            assert document.tenant == "alpha" and document.filename == "tides & locks.md"
            listed = http.get("/v1/documents", params={"external_id": uri}).json()
            assert [d["document_id"] for d in listed["items"]] == [str(document.id)]
            found = http.post("/v1/search", json={"query": "spring tides full moon"}).json()
            assert str(document.id) in {hit["document_id"] for hit in found["hits"]}

            client.delete_object(Bucket=bucket, Key=key)
            removed = {"Records": [_s3_record("ObjectRemoved:Delete", bucket, encoded, 0, "0A2")]}
            answer = http.post("/v1/notifications/s3", json=removed)
            assert answer.json() == {
                "uploads": 0,
                "removed": 1,
                "deleted_documents": 1,
                "ignored": 0,
            }
            assert _documents(s3) == []
            found = http.post("/v1/search", json={"query": "spring tides full moon"}).json()
            assert found["hits"] == []
