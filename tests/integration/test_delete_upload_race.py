"""Issue 14 item 10: a delete racing an upload of the same bytes never loses the upload's blob.

Tenant ``alpha`` deletes its document A while tenant ``beta`` uploads the same
bytes (another document B, the same content-addressed blob). The delete must
not remove the blob from under B: an upload answered 202 has its bytes stored.

To make the race likely on every round, a test-only trigger sleeps a random few
milliseconds inside the upload's transaction (after its blob statement, at its
document insert), the way a busy database would.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select, text, update

from ragstream.db import blobs
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob, Document
from ragstream.settings import Settings
from tests.integration.test_api_server import ApiServer, serve, upload

pytestmark = pytest.mark.integration

ROUNDS = 40

_SLOW_INSERT = """
CREATE FUNCTION test_slow_document_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(random() * 0.04);
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_document_insert BEFORE INSERT ON documents
    FOR EACH ROW WHEN (NEW.filename LIKE 'b%') EXECUTE FUNCTION test_slow_document_insert();
"""


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(text(_SLOW_INSERT))
    engine.dispose()
    yield from serve(settings, poller=False)


def _race(
    alpha: httpx.Client,
    beta: httpx.Client,
    document_a: str,
    file: tuple[str, bytes],
    *,
    delay: float,
) -> tuple[httpx.Response, httpx.Response]:
    """Alpha deletes its document while beta uploads the same bytes, together (two threads)."""
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(2)

    def delete_a() -> None:
        start.wait()
        threading.Event().wait(delay)
        answers["delete"] = alpha.delete(f"/v1/documents/{document_a}")

    def upload_b() -> None:
        start.wait()
        answers["upload"] = upload(beta, file)

    threads = [threading.Thread(target=delete_a), threading.Thread(target=upload_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers["delete"], answers["upload"]


def test_delete_racing_an_upload_of_the_same_bytes_never_loses_an_accepted_blob(
    api: ApiServer,
) -> None:
    engine = make_engine(api.settings)
    rng = random.Random(14)
    lost: list[str] = []
    outcomes: dict[tuple[int, int], int] = {}
    with api.client("alpha") as alpha, api.client("beta") as beta:
        for round_ in range(ROUNDS):
            data = f"race round {round_} {uuid.uuid4()} the same bytes twice\n".encode() * 20
            first = upload(alpha, (f"a{round_}.txt", data))
            assert first.status_code == 202, first.text
            document_a = first.json()["documents"][0]["document_id"]
            with engine.begin() as conn:  # terminal, so it may be deleted
                conn.execute(
                    update(Document)
                    .where(Document.id == uuid.UUID(document_a))
                    .values(status="failed")
                )
            deleted, uploaded = _race(
                alpha, beta, document_a, (f"b{round_}.txt", data), delay=rng.uniform(0, 0.03)
            )
            assert deleted.status_code == 200, deleted.text
            assert uploaded.status_code in (200, 202), uploaded.text
            key = (deleted.status_code, uploaded.status_code)
            outcomes[key] = outcomes.get(key, 0) + 1
            with engine.connect() as conn:
                stored = conn.execute(
                    select(Blob.sha256).where(Blob.sha256 == blobs.sha256_of(data))
                ).scalar_one_or_none()
            if stored is None:
                lost.append(f"round {round_}: upload {uploaded.status_code}, blob gone")
    engine.dispose()
    assert not lost, f"{len(lost)} of {ROUNDS} accepted uploads lost their blob: {lost[:5]}"
    assert outcomes == {(200, 202): ROUNDS}, outcomes


def test_delete_racing_the_same_tenant_uploading_the_same_bytes_again(api: ApiServer) -> None:
    """The same document id both ways: no deadlock, no 5xx, and a 202 keeps its bytes.

    The upload either comes first (200: the document is there, and the delete
    then removes it) or after the delete (202: a new document with its bytes).
    """
    engine = make_engine(api.settings)
    rng = random.Random(15)
    broken: list[str] = []
    outcomes: dict[int, int] = {}
    with api.client("alpha") as alpha, api.client("alpha") as again:
        for round_ in range(ROUNDS // 2):
            data = f"same tenant round {round_} {uuid.uuid4()}\n".encode() * 20
            first = upload(alpha, (f"a{round_}.txt", data))
            assert first.status_code == 202, first.text
            document_a = first.json()["documents"][0]["document_id"]
            with engine.begin() as conn:
                conn.execute(
                    update(Document)
                    .where(Document.id == uuid.UUID(document_a))
                    .values(status="failed")
                )
            deleted, uploaded = _race(
                alpha, again, document_a, (f"b{round_}.txt", data), delay=rng.uniform(0, 0.03)
            )
            assert deleted.status_code == 200, deleted.text
            assert uploaded.status_code in (200, 202), uploaded.text
            outcomes[uploaded.status_code] = outcomes.get(uploaded.status_code, 0) + 1
            if uploaded.status_code == 202:
                with engine.connect() as conn:
                    blob = conn.execute(
                        select(Blob.sha256).where(Blob.sha256 == blobs.sha256_of(data))
                    ).scalar_one_or_none()
                    document = conn.execute(
                        select(Document.status).where(Document.id == uuid.UUID(document_a))
                    ).scalar_one_or_none()
                if blob is None or document != "uploaded":
                    broken.append(f"round {round_}: 202 but blob {blob} document {document}")
    engine.dispose()
    assert not broken, broken
    assert sum(outcomes.values()) == ROUNDS // 2, outcomes
