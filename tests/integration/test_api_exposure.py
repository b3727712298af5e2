"""What the API shows and takes without a tenant's key (issue 14, items 6 and 8).

Operator views need an operator key (tenant ``*``); ``/metrics`` stays open and
carries no tenant data; the webhook, the multipart parser and the search model
are bounded before anyone is authenticated or anything is loaded.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import insert

from ragstream.db.engine import make_engine
from ragstream.db.models import EmbeddingModel
from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_api_documents import run_stages
from tests.integration.test_api_server import ApiServer, _read_answer, serve

pytestmark = pytest.mark.integration

ZEBRA, QUOKKA, OPERATOR = "tenant-zebra-7f3", "tenant-quokka-91c", "*"
KEYS = {
    ZEBRA: "key-zebra-0123456789",
    QUOKKA: "key-quokka-0123456789",
    OPERATOR: "key-operator-0123456789",
}
API_KEYS = SecretStr(",".join(f"{key}:{tenant}" for tenant, key in KEYS.items()))
WEBHOOK_LIMIT = 1024 * 1024
OPERATOR_VIEWS = ("/v1/alerts",)
# Open to a tenant's key (that tenant's documents only) and to an operator key (everything).
DASHBOARD = ("/dashboard", "/dashboard/dashboard.js", "/v1/dashboard")


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings, api_keys=API_KEYS)


def _client(api: ApiServer, tenant: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
    return httpx.Client(base_url=api.url, headers=headers, timeout=60)


def _app(api: ApiServer) -> Any:
    return api.server.config.app


def _services(api: ApiServer) -> Any:
    return _app(api).state.services


def _upload(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return client.post("/v1/documents", files=[("file", (name, data))])


# --- item 6: operator views ---------------------------------------------------


def test_operator_views_answer_401_without_a_key_403_to_a_tenant_200_to_the_operator(
    api: ApiServer,
) -> None:
    with _client(api, None) as anonymous:
        for path in (*OPERATOR_VIEWS, *DASHBOARD):
            answer = anonymous.get(path)
            assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])
            assert answer.headers["www-authenticate"].startswith("Basic realm="), path
            wrong = anonymous.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
    with _client(api, ZEBRA) as tenant:
        for path in OPERATOR_VIEWS:
            answer = tenant.get(path)
            assert answer.status_code == 403, (path, answer.status_code)
            assert "operator key" in answer.json()["detail"]
        for path in DASHBOARD:
            assert tenant.get(path).status_code == 200, path
        mine = tenant.get("/v1/dashboard").json()
        assert mine["role"] == "tenant" and "stages" not in mine and "alerts" not in mine
    with _client(api, OPERATOR) as operator:
        for path in (*OPERATOR_VIEWS, *DASHBOARD):
            assert operator.get(path).status_code == 200, path
        assert "failures" in operator.get("/v1/dashboard").json()
        # An operator key is no tenant: it reads and writes no documents.
        listing = operator.get("/v1/documents")
        assert listing.status_code == 403 and "tenant" in listing.json()["detail"]
        assert _upload(operator, "a.txt", b"operator upload").status_code == 403
        search = operator.post("/v1/search", json={"query": "x"})
        assert search.status_code == 403
    # What a browser sends once it asked for the key: HTTP Basic, the key as the password.
    basic = base64.b64encode(f"operator:{KEYS[OPERATOR]}".encode()).decode()
    with _client(api, None) as browser:
        for path in (*OPERATOR_VIEWS, *DASHBOARD):
            answer = browser.get(path, headers={"Authorization": f"Basic {basic}"})
            assert answer.status_code == 200, path
        tenant_basic = base64.b64encode(f"x:{KEYS[ZEBRA]}".encode()).decode()
        answer = browser.get("/v1/alerts", headers={"Authorization": f"Basic {tenant_basic}"})
        assert answer.status_code == 403


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(path, methods) of every route, through included routers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "path"):
            yield prefix + route.path, sorted(route.methods or {"GET"})


def test_routes_without_a_key_are_only_health_metrics_docs_and_the_signed_webhook(
    api: ApiServer,
) -> None:
    """Every route of the app, asked without a key: the open ones are the listed ones."""
    open_routes = {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/v1/webhooks/llamaparse",  # authenticated by its signature
    }
    doc_id = "00000000-0000-0000-0000-000000000001"
    seen = set()
    with _client(api, None) as anonymous:
        for path, methods in _routes(_app(api).routes):
            concrete = path.replace("{document_id}", doc_id).replace("{job_id}", doc_id)
            for method in methods:
                if method == "HEAD":
                    continue
                answer = anonymous.request(method, concrete)
                seen.add(path)
                if path == "/v1/webhooks/llamaparse":
                    assert "signature" in answer.text or "webhook" in answer.text
                elif path in open_routes:
                    assert answer.status_code != 401, (method, path)
                else:
                    assert answer.status_code == 401, (method, path, answer.status_code)
    assert open_routes <= seen


def test_metrics_carry_no_tenant_name_filename_or_document_id(api: ApiServer) -> None:
    uploaded: dict[str, list[str]] = {}
    names = {ZEBRA: "zebra-salary-review.md", QUOKKA: "quokka-merger-plan.md"}
    for tenant, seed in ((ZEBRA, 41), (QUOKKA, 42)):
        with _client(api, tenant) as client:
            answer = _upload(client, names[tenant], corpus.markdown(seed))
            assert answer.status_code == 202, answer.text
            document_id = answer.json()["documents"][0]["document_id"]
            uploaded[tenant] = [document_id]
            # Error answers and raw paths that carry tenant data.
            assert _upload(client, f"{tenant}.png", b"GIF89a" + b"\0" * 32).status_code
            client.get(f"/v1/documents/{document_id}")
            client.get(f"/v1/documents/{document_id}/chunks")
            client.get(f"/{tenant}/{names[tenant]}")
            client.request(tenant.upper().replace("-", ""), "/v1/documents")
    run_stages(api.settings, documents=2)
    with _client(api, None) as anonymous:
        scraped = anonymous.get("/metrics")
    assert scraped.status_code == 200
    body = scraped.text
    assert "ragstream_api_requests_total" in body
    for tenant, ids in uploaded.items():
        for secret in (tenant, tenant.upper().replace("-", ""), names[tenant], *ids):
            assert secret not in body, f"{secret!r} appears in /metrics"
        for stem in (names[tenant].split(".")[0], "zebra", "quokka"):
            assert stem not in body, f"{stem!r} appears in /metrics"


# --- item 8a: the webhook's unauthenticated body ------------------------------


def _port(api: ApiServer) -> int:
    return int(api.url.rsplit(":", 1)[1])


def test_webhook_body_over_the_cap_is_413_before_it_is_buffered(settings: Settings) -> None:
    servers = serve(settings, api_keys=API_KEYS)
    api = next(servers)
    try:
        limit = WEBHOOK_LIMIT
        # Declared: refused on the headers alone.
        with socket.create_connection(("127.0.0.1", _port(api))) as sock:
            sock.sendall(
                b"POST /v1/webhooks/llamaparse HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (limit + 1)
            )
            answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"webhook" in answer
        # Streamed without a length: refused once the cap is passed, unsigned or not.
        sent = 0
        chunk = b"x" * 65536
        with socket.create_connection(("127.0.0.1", _port(api))) as sock:
            sock.sendall(
                b"POST /v1/webhooks/llamaparse HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            deadline = time.monotonic() + 60
            while sent < 64 * limit and time.monotonic() < deadline:
                if select.select([sock], [], [], 0.002)[0]:
                    break  # answered
                try:
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")  # the whole body sent, unanswered: end it
            answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert sent < 4 * limit + 1024 * 1024, f"{sent} bytes sent before the answer"
        assert api.settings.webhook_max_bytes == WEBHOOK_LIMIT  # the documented default
    finally:
        next(servers, None)


# --- item 8b: search names only models served here ----------------------------


def test_search_with_a_model_not_served_here_is_400_and_loads_nothing(api: ApiServer) -> None:
    services = _services(api)
    with _client(api, ZEBRA) as client:
        for model in ("minilm", "openai:text-embedding-3-large", "openai:attacker-1"):
            answer = client.post("/v1/search", json={"query": "ships", "model": model})
            assert answer.status_code == 400, (model, answer.status_code, answer.text)
            assert "not searchable here" in answer.json()["detail"], answer.text
            assert "searchable: hash" in answer.json()["detail"]  # names what is
        unknown = client.post("/v1/search", json={"query": "ships", "model": "nope"})
        assert unknown.status_code == 422 and "unknown model" in unknown.json()["detail"]
        # Served but without vectors yet (nothing ingested): said so, not an empty answer.
        named = client.post("/v1/search", json={"query": "ships", "model": "hash"})
        assert named.status_code == 404 and "no vectors here" in named.json()["detail"]
        assert client.post("/v1/search", json={"query": "ships"}).status_code == 200
    assert {name for name, _ in services.embedders._made} == {"hash"}


def test_search_names_a_model_with_vectors_here_or_registered_by_reembed(
    settings: Settings,
) -> None:
    """Vectors of ``hash`` are in the database while the API is configured for another model."""
    servers = serve(settings, api_keys=API_KEYS)
    api = next(servers)
    try:
        with _client(api, ZEBRA) as client:
            assert _upload(client, "notes.md", corpus.markdown(43)).status_code == 202
    finally:
        next(servers, None)
    run_stages(api.settings, documents=1)
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            insert(EmbeddingModel).values(
                model="openai:registered-model", spec="openai:registered-model", state="building"
            )
        )
    engine.dispose()
    servers = serve(
        settings,
        api_keys=API_KEYS,
        embedder="openai",
        openai_model="configured-model",
        openai_base_url="http://127.0.0.1:9",
    )
    api = next(servers)
    try:
        services = _services(api)
        with _client(api, ZEBRA) as client:
            found = client.post("/v1/search", json={"query": "the", "model": "hash", "k": 3})
            assert found.status_code == 200, found.text
            assert found.json()["model"] == "hash-384" and found.json()["hits"]
            refused = client.post("/v1/search", json={"query": "x", "model": "openai:other"})
            assert refused.status_code == 400, refused.text
            detail = refused.json()["detail"]
            assert "openai:configured-model" in detail and "openai:registered-model" in detail
        made = set(services.embedders._made)
        assert made == {("hash", "384")}, made
    finally:
        next(servers, None)


# --- item 8c: multipart part headers ------------------------------------------


def _multipart(headers: list[bytes]) -> bytes:
    return (
        b"--B\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\nhello there, a small document\r\n--B--\r\n"
    )


def test_multipart_part_headers_are_capped_in_count_and_size(api: ApiServer) -> None:
    with _client(api, ZEBRA) as client:
        many = [b"X-H%d: v" % i for i in range(1000)]
        answer = client.post(
            "/v1/documents",
            content=_multipart(many),
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )
        assert answer.status_code == 400, answer.text
        assert "headers" in answer.json()["detail"]
        huge = [b"X-Big: " + b"v" * (256 * 1024)]
        answer = client.post(
            "/v1/documents",
            content=_multipart(huge),
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )
        assert answer.status_code == 413, answer.text
        assert "headers" in answer.json()["detail"]
        normal = client.post(
            "/v1/documents",
            content=_multipart([b"Content-Type: text/plain"]),
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )
        assert normal.status_code == 202, normal.text
        assert json.loads(normal.text)["documents"][0]["created"] is True


# --- the other routes: a JSON body is read before the key is checked ----------


def test_a_request_body_over_the_cap_is_413_before_it_is_read_even_without_a_key(
    api: ApiServer,
) -> None:
    for path in ("/v1/search", "/v1/documents/00000000-0000-0000-0000-000000000001/reprocess"):
        with socket.create_connection(("127.0.0.1", _port(api))) as sock:
            sock.sendall(
                b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
            )
            answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    sent = 0
    chunk = b" " * 65536
    with socket.create_connection(("127.0.0.1", _port(api))) as sock:
        sock.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        deadline = time.monotonic() + 60
        while sent < 32 * 1024 * 1024 and time.monotonic() < deadline:
            if select.select([sock], [], [], 0.002)[0]:
                break  # answered
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            sock.sendall(b"0\r\n\r\n")
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < 8 * 1024 * 1024, f"{sent} bytes sent before the answer"
    # A real search still goes through.
    with _client(api, ZEBRA) as client:
        assert client.post("/v1/search", json={"query": "x" * 1000}).status_code == 200
