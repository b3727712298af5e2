"""The API as a server: health, readiness, metrics, keys, and the upload size limits.

Also home of :class:`ApiServer` (the app under uvicorn on a free loopback port,
in this process) and the fixtures the other API tests import.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import func
from sqlalchemy import select as sql_select

from ragstream.api.app import create_app
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob, Document
from ragstream.kafka import create_topics
from ragstream.settings import Settings

pytestmark = pytest.mark.integration

KEYS = {"alpha": "key-alpha-0123456789", "beta": "key-beta-0123456789"}
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"  # base64 of a test key
LLAMAPARSE_KEY = "llx-test-key"


class ApiServer:
    """The real app under uvicorn, on a free 127.0.0.1 port, started and stopped by the test."""

    def __init__(self, settings: Settings, *, poller: bool = True) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.settings = settings.model_copy(update={"api_port": port, "public_base_url": self.url})
        # Tests hold one client across long stage runs: with uvicorn's 5 s idle timeout the
        # server's close of a kept-alive connection can cross the next request (a reset).
        config = uvicorn.Config(
            create_app(self.settings, poller=poller),
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=300,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout_s: float = 60) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise AssertionError("the API did not start; see the log above")
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not start within {timeout_s}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=60)
        self._sock.close()

    def client(self, tenant: str | None = "alpha", **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def api_settings(settings: Settings, **update: object) -> Settings:
    """The test world's settings plus two tenants' keys and the webhook secret."""
    keys = ",".join(f"{key}:{tenant}" for tenant, key in KEYS.items())
    return settings.model_copy(
        update={
            "api_keys": SecretStr(keys),
            "webhook_secret": SecretStr(WEBHOOK_SECRET),
            "llamaparse_api_key": SecretStr(LLAMAPARSE_KEY),
            "api_publish_timeout_s": 5.0,
            **update,
        }
    )


def serve(settings: Settings, *, poller: bool = True, **update: object) -> Iterator[ApiServer]:
    """Body of the ``api`` fixtures: topics created, the API up, stopped afterwards."""
    create_topics(settings)
    server = ApiServer(api_settings(settings, **update), poller=poller).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings)


def upload(client: httpx.Client, *files: tuple[str, bytes], **fields: str) -> httpx.Response:
    return client.post("/v1/documents", files=[("file", f) for f in files], data=fields or None)


# --- tests -------------------------------------------------------------------


def test_health_ready_and_metrics_need_no_key(api: ApiServer) -> None:
    with api.client(None) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        anonymous.get("/v1/documents")  # counted as a 401 below
        body = anonymous.get("/metrics").text
    assert 'ragstream_api_requests_total{method="GET",route="/healthz",status="200"}' in body
    assert 'route="/v1/documents",status="401"' in body


def test_missing_or_wrong_key_is_401(api: ApiServer) -> None:
    with api.client(None) as anonymous:
        missing = anonymous.get("/v1/documents")
        wrong = anonymous.get("/v1/documents", headers={"Authorization": "Bearer nope"})
        upload_without_key = upload(anonymous, ("a.txt", b"hello there"))
    for answer in (missing, wrong, upload_without_key):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"


def test_unsupported_type_is_415_with_the_reason_and_stores_nothing(api: ApiServer) -> None:
    png = b"GIF89a" + b"\x00" * 64  # PNG, JPEG and TIFF are read by OCR; GIF is not
    with api.client() as client:
        answer = upload(client, ("ok.txt", b"a perfectly good text"), ("logo.txt", png))
    assert answer.status_code == 415
    assert "GIF" in answer.json()["detail"]
    engine = make_engine(api.settings)
    with engine.connect() as conn:
        assert conn.execute(sql_select(func.count()).select_from(Document)).scalar_one() == 0
        assert conn.execute(sql_select(func.count()).select_from(Blob)).scalar_one() == 0
    engine.dispose()


def test_declared_content_length_over_the_limit_is_413_without_reading(
    settings: Settings,
) -> None:
    create_topics(settings)
    server = ApiServer(api_settings(settings, max_upload_bytes=64 * 1024)).start()
    try:
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(
                b"POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + KEYS["alpha"].encode() + b"\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 1000000000\r\n\r\n"
            )
            answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"over the limit" in answer
    finally:
        server.stop()


def _stream_until_answered(url: str, total_bytes: int, chunk: int = 64 * 1024) -> tuple[bytes, int]:
    """POST a chunked multipart body of ``total_bytes``; stop sending once an answer arrives.

    Returns the answer's first bytes and how many body bytes were sent before it.
    """
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + KEYS["alpha"].encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        payload = head + b"a" * (chunk - len(head))
        deadline = time.monotonic() + 120
        while sent < total_bytes and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.002)
            if readable:
                break
            part = payload if sent == 0 else b"a" * chunk
            try:
                sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(part)
        answer = _read_answer(sock)
    return answer, sent


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer, head and body (by its Content-Length), or what came before EOF."""
    sock.settimeout(60)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return data
        try:
            more = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not more:
            return data
        data += more


def test_streamed_body_over_the_limit_is_413_before_it_is_read_or_buffered(
    settings: Settings,
) -> None:
    """No Content-Length: the server counts while reading and stops at the limit."""
    limit = 32 * 1024 * 1024
    create_topics(settings)
    server = ApiServer(api_settings(settings, max_upload_bytes=limit, api_max_files=1)).start()
    process = psutil.Process()
    try:
        before = process.memory_info().rss
        answer, sent = _stream_until_answered(server.url, total_bytes=8 * limit)
        grown_mb = (process.memory_info().rss - before) / 2**20
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"larger than the limit" in answer
    assert sent < 2 * limit, f"the server read {sent} bytes before refusing"
    assert grown_mb < 50, f"memory grew by {grown_mb:.0f} MB while refusing a streamed upload"
    print(
        f"413 after {sent / 2**20:.0f} MiB streamed (limit {limit / 2**20:.0f} MiB), "
        f"memory +{grown_mb:.1f} MB"
    )
