"""LlamaParse through a fake that is a real HTTP server: signed webhooks, replays, lost callbacks.

The fake (``tests/fakes/llamaparse_server.py``) signs its callbacks itself, with
its own implementation of the Standard Webhooks scheme.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import (
    ChunkBuffer,
    Document,
    LlamaParseJob,
    ParseBuffer,
    WebhookDelivery,
)
from ragstream.llamaparse.signature import sign
from ragstream.settings import Settings
from tests.fakes.llamaparse_server import FakeLlamaParse
from tests.integration.test_api_server import (
    LLAMAPARSE_KEY,
    WEBHOOK_SECRET,
    ApiServer,
    serve,
    upload,
)
from tests.pipeline import read_topic

pytestmark = pytest.mark.integration

DOCUMENT = (
    b"# Harbour report\n\nThe pilots moved forty ships through the narrows.\f"
    b"## Tides\n\nSpring tides reached the quay twice this week."
)


@pytest.fixture
def fake() -> Iterator[FakeLlamaParse]:
    server = FakeLlamaParse(api_key=LLAMAPARSE_KEY, webhook_secret=WEBHOOK_SECRET).start()
    yield server
    server.stop()


def _api(settings: Settings, fake: FakeLlamaParse, **update: Any) -> Iterator[ApiServer]:
    update = {
        "llamaparse_base_url": fake.url,
        "llamaparse_poll_interval_s": 3600.0,
        **update,
    }
    yield from serve(settings, **update)


@pytest.fixture
def api(settings: Settings, fake: FakeLlamaParse) -> Iterator[ApiServer]:
    yield from _api(settings, fake)


def _submit_to_llamaparse(api: ApiServer) -> tuple[str, str]:
    """Upload with parser=llamaparse and run the parse stage; returns (document id, job id)."""
    with api.client() as client:
        answer = upload(client, ("harbour.md", DOCUMENT), parser="llamaparse")
    assert answer.status_code == 202, answer.text
    document_id = answer.json()["documents"][0]["document_id"]
    stats = build_runner(api.settings, "parse").run(max_messages=1, idle_timeout_s=20)
    assert stats.processed == 1, stats
    engine = make_engine(api.settings)
    with engine.connect() as conn:
        (job_id,) = conn.execute(select(LlamaParseJob.id)).scalars().all()
    engine.dispose()
    return document_id, job_id


def _state(settings: Settings, document_id: str) -> dict[str, Any]:
    engine = make_engine(settings)
    with engine.connect() as conn:
        doc = conn.execute(
            select(Document.status, Document.error_message).where(
                Document.id == uuid.UUID(document_id)
            )
        ).one()
        counts = {
            model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (ParseBuffer, WebhookDelivery, LlamaParseJob)
        }
        vias = list(conn.execute(select(LlamaParseJob.received_via)).scalars())
    engine.dispose()
    return {"status": doc.status, "error": doc.error_message, "via": vias, **counts}


def _wait_status(settings: Settings, document_id: str, status: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (found := _state(settings, document_id))["status"] != status:
        assert time.monotonic() < deadline, f"still {found} after {timeout_s}s"
        time.sleep(0.2)


def test_a_valid_callback_is_accepted_once_and_a_replay_adds_nothing(
    api: ApiServer, fake: FakeLlamaParse
) -> None:
    fake.never_finish = True
    document_id, job_id = _submit_to_llamaparse(api)
    assert _state(api.settings, document_id)["status"] == "parsing"
    assert read_topic(api.settings, topology.PARSED, expect=1, timeout_s=3) == []
    assert fake.jobs[job_id].webhook_url == f"{api.url}/v1/webhooks/llamaparse"

    fake.jobs[job_id].status = "SUCCESS"  # the result is fetched from /result/json
    first = fake.send_webhook(job_id, webhook_id="msg_once")
    assert first.status_code == 200 and first.json() == {"outcome": "completed"}
    after_first = _state(api.settings, document_id)
    assert after_first["status"] == "parsed" and after_first["via"] == ["webhook"]
    assert after_first["document_parse_buffer"] == 1 and after_first["webhook_deliveries"] == 1
    assert f"GET /api/v1/parsing/job/{job_id}/result/json" in fake.requests

    replay = fake.send_webhook(job_id, webhook_id="msg_once")
    assert replay.status_code == 200 and replay.json() == {"outcome": "duplicate"}
    other_delivery = fake.send_webhook(job_id, webhook_id="msg_twice")
    assert other_delivery.json() == {"outcome": "already_done"}
    assert _state(api.settings, document_id) | {"webhook_deliveries": 1} == after_first
    assert len(read_topic(api.settings, topology.PARSED, expect=2, timeout_s=5)) == 1

    # The parsed result goes on like any other: page numbers and headings reach the chunks.
    assert build_runner(api.settings, "chunk").run(max_messages=1, idle_timeout_s=20).processed
    engine = make_engine(api.settings)
    with engine.connect() as conn:
        chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
    engine.dispose()
    for stage in ("embed", "finalize"):
        stats = build_runner(api.settings, stage).run(max_messages=chunks, idle_timeout_s=20)
        assert stats.processed == chunks, (stage, stats)
    with api.client() as client:
        assert client.get(f"/v1/documents/{document_id}").json()["status"] == "complete"
        chunks = client.get(f"/v1/documents/{document_id}/chunks").json()["items"]
    assert {p for c in chunks for p in c["pages"]} == {1, 2}
    assert any(c["heading_path"][:1] == ["Harbour report"] for c in chunks)


def test_forged_tampered_stale_or_unsigned_callbacks_are_rejected_with_no_effect(
    api: ApiServer, fake: FakeLlamaParse
) -> None:
    fake.never_finish = True
    document_id, job_id = _submit_to_llamaparse(api)
    fake.jobs[job_id].status = "SUCCESS"
    before = _state(api.settings, document_id)
    answers = {
        "tampered": fake.send_webhook(job_id, tamper=True),
        "wrong secret": fake.send_webhook(job_id, secret="whsec_d3Jvbmcta2V5LXdyb25nLWtleQ=="),
        "stale": fake.send_webhook(job_id, timestamp=int(time.time()) - 330),
        "future": fake.send_webhook(job_id, timestamp=int(time.time()) + 330),
        "no id": fake.send_webhook(job_id, omit=("webhook-id",)),
        "no timestamp": fake.send_webhook(job_id, omit=("webhook-timestamp",)),
        "no signature": fake.send_webhook(job_id, omit=("webhook-signature",)),
        "not json": fake.send_webhook(job_id, body=b"not json at all"),
        "no job": fake.send_webhook(job_id, body=b'{"event_type": "parse.success"}'),
        "unknown job": fake.send_webhook(
            job_id, body=b'{"event_type": "parse.success", "data": {"job_id": "lp-nope"}}'
        ),
    }
    codes = {what: answer.status_code for what, answer in answers.items()}
    assert codes == {
        "tampered": 401,
        "wrong secret": 401,
        "stale": 401,
        "future": 401,
        "no id": 400,
        "no timestamp": 400,
        "no signature": 400,
        "not json": 400,
        "no job": 400,
        "unknown job": 404,
    }
    assert _state(api.settings, document_id) == before
    assert read_topic(api.settings, topology.PARSED, expect=1, timeout_s=3) == []
    # Still completable by the genuine callback.
    assert fake.send_webhook(job_id).json() == {"outcome": "completed"}
    assert _state(api.settings, document_id)["status"] == "parsed"


def test_the_fakes_own_callback_with_the_result_inline_completes_the_parse(
    api: ApiServer, fake: FakeLlamaParse
) -> None:
    fake.inline_result = True
    document_id, job_id = _submit_to_llamaparse(api)
    _wait_status(api.settings, document_id, "parsed")
    assert [d.status_code for d in fake.deliveries if d.job_id == job_id][-1] == 200
    assert not any(r.endswith("/result/json") for r in fake.requests)  # taken from the body
    assert len(read_topic(api.settings, topology.PARSED, expect=1)) == 1


def test_llamaparse_reporting_an_error_fails_the_document_with_its_reason(
    api: ApiServer, fake: FakeLlamaParse
) -> None:
    fake.fail_jobs = True
    document_id, _ = _submit_to_llamaparse(api)
    _wait_status(api.settings, document_id, "failed")
    error = _state(api.settings, document_id)["error"]
    assert error == "parse: LlamaParse job failed: the document could not be read"


def test_a_lost_callback_is_reconciled_by_the_poller(
    settings: Settings, fake: FakeLlamaParse
) -> None:
    fake.drop_webhooks = True
    for api in _api(settings, fake, llamaparse_poll_interval_s=0.5):
        document_id, _ = _submit_to_llamaparse(api)
        _wait_status(api.settings, document_id, "parsed")
        assert fake.deliveries == []
        state = _state(api.settings, document_id)
        assert state["via"] == ["poller"] and state["webhook_deliveries"] == 0
        assert len(read_topic(api.settings, topology.PARSED, expect=1)) == 1


def test_a_callback_that_never_comes_is_retried_then_fails_the_document(
    settings: Settings, fake: FakeLlamaParse
) -> None:
    fake.never_finish = True
    for api in _api(
        settings,
        fake,
        llamaparse_poll_interval_s=0.3,
        llamaparse_callback_timeout_s=1.0,
        llamaparse_max_attempts=2,
    ):
        document_id, _ = _submit_to_llamaparse(api)
        _wait_status(api.settings, document_id, "failed", timeout_s=60)
        state = _state(api.settings, document_id)
        assert state["error"] == "parse: LlamaParse callback timed out"
        assert len(fake.jobs) == 2  # submitted, then once more
        engine = make_engine(api.settings)
        with engine.connect() as conn:
            statuses = sorted(conn.execute(select(LlamaParseJob.status)).scalars())
        engine.dispose()
        assert statuses == ["abandoned", "failed"]


def test_the_signature_matches_the_standard_webhooks_reference_vector() -> None:
    """The example of the Standard Webhooks specification, computed by our signer."""
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
