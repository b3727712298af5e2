"""`ragstream ingest --wait --json` and `ragstream status --json`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragstream.kafka import create_topics
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import Workers, expected_chunks, settings_env

pytestmark = pytest.mark.e2e


def _ragstream(settings: Settings, *args: str, timeout_s: float = 300) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "ragstream.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **settings_env(settings)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_ingest_wait_json_reports_every_file(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    good = corpus.mixed(5, seed=31)
    for name, data in good:
        (docs / "nested" / name).write_bytes(data)
    (docs / "picture.png").write_bytes(b"GIF89a" + b"\x00" * 64)  # GIF is not read by OCR
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog")
    (docs / ".hidden.txt").write_text("not submitted")

    workers = Workers(settings, tmp_path / "logs")
    workers.start_all()
    try:
        report = _ragstream(settings, "ingest", str(docs), "--wait", "--json", "--timeout", "180")
    finally:
        workers.stop_all()

    assert set(report) == {
        "documents", "complete", "failed", "stuck", "chunks", "vectors", "elapsed_s", "items"
    }  # fmt: skip
    assert report["documents"] == 7
    assert report["complete"] == 5
    assert report["failed"] == 2
    assert report["stuck"] == 0
    expected = expected_chunks(settings, good)
    assert report["chunks"] == report["vectors"] == sum(expected.values())
    items = {Path(str(i["path"])).name: i for i in report["items"]}  # type: ignore[attr-defined]
    assert items["picture.png"]["status"] == "rejected"
    assert "GIF" in items["picture.png"]["error"]
    assert items["broken.pdf"]["status"] == "failed"
    assert items["broken.pdf"]["failed_stage"] == "parse"
    assert items["broken.pdf"]["error"].startswith("parse: ")
    for name, _ in good:
        assert items[name]["status"] == "complete"
        assert items[name]["chunks"] == expected[name]

    status = _ragstream(settings, "status", "--json")
    assert status["documents"] == {"complete": 5, "failed": 1}
    assert status["lag"] == {"parse": 0, "chunk": 0, "embed": 0, "finalize": 0}
