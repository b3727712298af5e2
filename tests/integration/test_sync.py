"""``ragstream sync DIR`` against the real broker and database: files added, edited,
deleted and renamed between runs; a run killed midway and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ragstream.db.engine import make_engine
from ragstream.db.models import Document, SyncObject
from ragstream.devstack.s3proxy import S3Endpoint
from ragstream.embedding import make_embedder
from ragstream.search import search
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from ragstream.sync import DirectorySource, open_source, sync
from tests.pipeline import new_bucket, prepare, run_stages, settings_env

pytestmark = pytest.mark.integration

TEXTS = {
    "a.md": "# Lighthouse\n\nThe lighthouse keeper climbs one hundred steps at dusk.",
    "b.md": "# Orchard\n\nApple trees in the orchard blossom late in a cold April.",
    "c.txt": "Glaciers carve valleys slowly, grinding rock into fine flour.",
    "sub/d.md": "# Bakery\n\nSourdough rises overnight in the bakery on Mill Street.",
}


def _write(root: Path, key: str, text: str) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _hits(settings: Settings, query: str) -> set[uuid.UUID]:
    engine = make_engine(settings)
    try:
        found = search(engine, make_embedder(settings), query, tenant=settings.tenant, k=10)
        return {h.document_id for h in found.hits}
    finally:
        engine.dispose()


def _synced(settings: Settings) -> dict[str, uuid.UUID]:
    engine = make_engine(settings)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(SyncObject.key, SyncObject.document_id)).all())
    engine.dispose()
    return rows


def _documents(settings: Settings) -> dict[uuid.UUID, str]:
    engine = make_engine(settings)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(Document.id, Document.status)).all())
    engine.dispose()
    return rows


def test_sync_follows_adds_edits_deletes_and_renames(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    for key, text in TEXTS.items():
        _write(root, key, text)
    submitter = prepare(settings)
    source = DirectorySource(root)

    first = sync(submitter, source)
    assert first.counts == {"new": 4, "changed": 0, "unchanged": 0, "deleted": 0, "failed": 0}
    run_stages(settings, documents=4)
    ids = _synced(settings)
    assert set(_documents(settings).values()) == {DocumentStatus.COMPLETE.value}
    assert ids["b.md"] in _hits(settings, "apple trees orchard blossom")

    assert sync(submitter, source).counts["unchanged"] == 4  # idempotent: nothing else
    assert sync(submitter, source).counts == {
        "new": 0,
        "changed": 0,
        "unchanged": 4,
        "deleted": 0,
        "failed": 0,
    }

    _write(root, "a.md", TEXTS["a.md"] + "\n\nIn winter the lamp burns until nine.")
    (root / "b.md").unlink()
    (root / "c.txt").rename(root / "e.txt")
    os.utime(root / "sub/d.md", ns=(1, 1))  # only the mtime changes: hashed, unchanged
    expected = {"new": 1, "changed": 1, "unchanged": 1, "deleted": 2, "failed": 0}
    assert sync(submitter, source, dry_run=True).counts == expected
    assert _synced(settings) == ids  # a dry run changes nothing
    kept = sync(submitter, source, delete_gone=False).counts
    assert kept == {**expected, "deleted": 0}
    assert ids["b.md"] in _documents(settings)
    assert sync(submitter, source).counts == {**expected, "new": 0, "changed": 0, "unchanged": 3}
    run_stages(settings, documents=1)  # the new version of a.md

    now = _synced(settings)
    documents = _documents(settings)
    assert sorted(now) == ["a.md", "e.txt", "sub/d.md"]
    assert ids["b.md"] not in documents  # deleted at the source: gone from the database
    assert not _hits(settings, "apple trees orchard blossom") & {ids["b.md"]}
    assert now["e.txt"] == ids["c.txt"] and now["e.txt"] in documents  # renamed: same document
    assert now["a.md"] != ids["a.md"] and ids["a.md"] not in documents  # replaced by version 2
    assert documents[now["a.md"]] == DocumentStatus.COMPLETE.value
    assert now["a.md"] in _hits(settings, "lamp burns until nine in winter")
    assert sync(submitter, source).counts == {
        "new": 0,
        "changed": 0,
        "unchanged": 3,
        "deleted": 0,
        "failed": 0,
    }
    submitter.producer.close()


def test_a_sync_killed_midway_and_run_again_ends_as_one_uninterrupted_run(
    settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "many"
    files = {
        f"n{i:03d}.txt": f"Note {i}: the number {i * 7919} is written here." for i in range(80)
    }
    for key, text in files.items():
        _write(root, key, text)
    prepare(settings).producer.close()
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "ragstream.cli", "sync", str(root), "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    engine = make_engine(settings)
    done = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(SyncObject)).scalar_one()
        if done >= 5:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert done < len(files)  # killed midway

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)
    assert counts["new"] + counts["unchanged"] == len(files) and counts["failed"] == 0
    with engine.connect() as conn:
        rows = conn.execute(select(SyncObject.key, SyncObject.document_id)).all()
        documents = conn.execute(select(Document.id, Document.external_id)).all()
    engine.dispose()
    # One document per file, each named by its file, none twice: as one uninterrupted run.
    assert sorted(k for k, _ in rows) == sorted(files)
    assert len(documents) == len(files) == len({d for _, d in rows})
    assert {e for _, e in documents} == {f"{root.resolve().as_uri()}/{k}" for k in files}
    last = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(last.stdout) == {
        "new": 0,
        "changed": 0,
        "unchanged": len(files),
        "deleted": 0,
        "failed": 0,
        "errors": {},
    }


def test_sync_of_an_s3_prefix_reaches_complete_and_follows_edits_and_deletes(
    settings: Settings, s3proxy: S3Endpoint
) -> None:
    s3, client, bucket = new_bucket(settings, s3proxy)
    client.put_object(Bucket=bucket, Key="docs/ferry.md", Body=TEXTS["a.md"].encode())
    client.put_object(Bucket=bucket, Key="docs/orchard.md", Body=TEXTS["b.md"].encode())
    client.put_object(Bucket=bucket, Key="other/skip.md", Body=TEXTS["c.txt"].encode())
    submitter = prepare(s3)
    source = open_source(s3, f"s3://{bucket}/docs")
    assert source.uri == f"s3://{bucket}/docs"
    assert sync(submitter, source).counts == {
        "new": 2,
        "changed": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 0,
    }
    run_stages(s3, documents=2)
    ids = _synced(s3)
    assert sorted(ids) == ["ferry.md", "orchard.md"]
    assert set(_documents(s3).values()) == {DocumentStatus.COMPLETE.value}
    assert ids["orchard.md"] in _hits(s3, "apple trees orchard blossom")

    client.delete_object(Bucket=bucket, Key="docs/orchard.md")
    client.put_object(Bucket=bucket, Key="docs/ferry.md", Body=b"# Ferry\n\nNow hourly, all day.")
    assert sync(submitter, source).counts == {
        "new": 0,
        "changed": 1,
        "unchanged": 0,
        "deleted": 1,
        "failed": 0,
    }
    run_stages(s3, documents=1)
    documents = _documents(s3)
    assert ids["orchard.md"] not in documents
    assert not _hits(s3, "apple trees orchard blossom") & {ids["orchard.md"]}
    assert documents[_synced(s3)["ferry.md"]] == DocumentStatus.COMPLETE.value
    assert sync(submitter, source).counts["unchanged"] == 1
    submitter.producer.close()
