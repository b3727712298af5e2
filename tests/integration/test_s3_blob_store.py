"""Uploads kept in an S3-compatible bucket (``blob_store = s3://bucket/prefix``) against the
real S3 server, broker and database: stored once per content, parsed from the object
in pieces, checked against their hash on read, and swept once no row names them."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from ragstream.blobstore import BlobStore
from ragstream.consumers.worker import build_runner
from ragstream.db import purge
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob, Document
from ragstream.devstack.s3proxy import S3Endpoint
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from tests import corpus
from tests.pipeline import new_bucket, prepare, run_stages

pytestmark = pytest.mark.integration


def _objects(client: object, bucket: str, prefix: str) -> dict[str, int]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def test_uploads_live_in_the_bucket_and_go_through_the_pipeline(
    settings: Settings, s3proxy: S3Endpoint
) -> None:
    s3, client, bucket = new_bucket(settings, s3proxy)
    s3 = s3.model_copy(update={"blob_store": f"s3://{bucket}/uploads"})
    submitter = prepare(s3)
    pdf = corpus.pdf(seed=3, pages=12)  # several slices' worth of pieces, read streamed
    note = corpus.markdown(seed=4)
    first = submitter.submit(pdf, filename="guide.pdf")
    again = submitter.submit(pdf, filename="guide-copy.pdf")
    second = submitter.submit(note, filename="note.md")
    assert again.document_id == first.document_id and not again.created

    sha_pdf, sha_note = hashlib.sha256(pdf).hexdigest(), hashlib.sha256(note).hexdigest()
    assert _objects(client, bucket, "uploads/") == {
        f"uploads/{sha_pdf}": len(pdf),
        f"uploads/{sha_note}": len(note),
    }
    engine = make_engine(s3)
    with engine.connect() as conn:
        rows = {r.sha256: r for r in conn.execute(select(Blob.sha256, Blob.content, Blob.location))}
    assert rows[sha_pdf].content is None
    assert rows[sha_pdf].location == f"s3://{bucket}/uploads/{sha_pdf}"

    run_stages(s3, documents=2)
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(Document.id, Document.status)).all())
    assert statuses == {
        first.document_id: DocumentStatus.COMPLETE.value,
        second.document_id: DocumentStatus.COMPLETE.value,
    }

    # A changed object is caught by its hash: the document fails, the worker goes on.
    corrupt = corpus.markdown(seed=5)
    client.put_object(Bucket=bucket, Key=f"uploads/{sha_note}", Body=corrupt)
    store = BlobStore(s3, engine)
    with pytest.raises(Exception, match="corrupt"):
        b"".join(store.open_stream(sha_note))

    # A delete removes rows; the sweep removes the objects no row names, and only those.
    with engine.begin() as conn:
        purge.purge_documents(conn, [second.document_id])
    assert f"uploads/{sha_note}" in _objects(client, bucket, "uploads/")
    assert store.sweep(older_than_s=3600) == 0  # too recent
    assert store.sweep(older_than_s=0) == 1
    assert _objects(client, bucket, "uploads/") == {f"uploads/{sha_pdf}": len(pdf)}
    assert store.get(engine.connect(), sha_pdf) == pdf
    submitter.producer.close()
    engine.dispose()


def test_an_upload_whose_object_changed_fails_at_parse_with_the_reason(
    settings: Settings, s3proxy: S3Endpoint
) -> None:
    s3, client, bucket = new_bucket(settings, s3proxy)
    s3 = s3.model_copy(update={"blob_store": f"s3://{bucket}"})
    submitter = prepare(s3)
    data = corpus.markdown(seed=6)
    done = submitter.submit(data, filename="a.md")
    sha = hashlib.sha256(data).hexdigest()
    assert _objects(client, bucket, "") == {sha: len(data)}
    client.put_object(Bucket=bucket, Key=sha, Body=data[:-10])
    stats = build_runner(s3, "parse").run(max_messages=1, idle_timeout_s=20)
    assert (stats.processed, stats.failed) == (0, 1)
    engine = make_engine(s3)
    with engine.connect() as conn:
        document = conn.execute(
            select(Document.status, Document.error_class, Document.error_message).where(
                Document.id == done.document_id
            )
        ).one()
    assert document.status == "failed" and document.error_class == "MissingBlob"
    assert "corrupt" in (document.error_message or "")
    submitter.producer.close()
    engine.dispose()
