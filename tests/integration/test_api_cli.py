"""The CLI's API side: ``ingest --api``, ``search``, ``status --json`` and the generated key."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragstream.api.keys import ensure_key, key_file, load_keys
from ragstream.cli import app
from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_api_documents import run_stages
from tests.integration.test_api_server import KEYS, ApiServer, serve
from tests.pipeline import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings)


def test_ingest_through_the_api_then_search_from_the_cli(api: ApiServer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    files = corpus.mixed(3, seed=31)
    for name, data in files:
        (folder / name).write_bytes(data)
    (folder / "picture.txt").write_bytes(b"GIF89a" + b"\x00" * 32)
    env = {**settings_env(api.settings), "RAGSTREAM_TENANT": "alpha"}
    runner = CliRunner()
    ingested = runner.invoke(
        app,
        ["ingest", str(folder), "--api", api.url, "--api-key", KEYS["alpha"], "--json"],
        env=env,
    )
    assert ingested.exit_code == 0, ingested.output
    report = json.loads(ingested.stdout)
    assert report["documents"] == 4 and report["failed"] == 1
    rejected = next(i for i in report["items"] if i["path"].endswith("picture.txt"))
    assert rejected["error"].startswith("upload: HTTP 415")
    assert all(i["document_id"] for i in report["items"] if i is not rejected)

    run_stages(api.settings, documents=3)
    with api.client() as client:
        document_id = next(i["document_id"] for i in report["items"] if i is not rejected)
        chunk = client.get(f"/v1/documents/{document_id}/chunks").json()["items"][0]
    query = " ".join(chunk["text"].split()[:30])
    found = runner.invoke(app, ["search", query, "--k", "3", "--json"], env=env)
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert hits[0]["chunk_id"] == chunk["chunk_id"]
    table = runner.invoke(app, ["search", query], env=env)
    assert table.exit_code == 0 and "score" in table.stdout
    other_tenant = runner.invoke(app, ["search", query, "--json", "--tenant", "beta"], env=env)
    assert json.loads(other_tenant.stdout) == []

    status = runner.invoke(app, ["status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["api_url"] == api.url


def test_a_generated_key_is_private_and_found_again(settings: Settings) -> None:
    key, generated = ensure_key(settings)
    assert generated and key.startswith("rs_")
    path = key_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(settings) == {key: "default"}
    assert ensure_key(settings) == (key, False)
