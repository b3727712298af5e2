"""The ``openai`` embedder against a real OpenAI-compatible server: infinity-emb serving
the shipped all-MiniLM-L6-v2 on the loopback (tests/embedding_server_real.py).

Configured as a user would (``base_url``, ``api_key``, model name, ``dimensions``),
through ``make_embedder``. Faults the server does not make on demand (429 and 503
with Retry-After, a stalled answer) come from a small reverse proxy in front of
it, which also records what each request carried. Marked ``torch``: the server
runs on torch from its own virtualenv, built by ``make test-torch``; where it is
meant to run, a server that cannot start fails these tests, it does not skip them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from ragstream.embedding import EndpointRejected, EndpointUnavailable, make_embedder
from ragstream.embedding.base import Embedder
from ragstream.embedding.openai_compat import OpenAIEmbedder
from ragstream.errors import Action, RetryPolicy, is_permanent, is_retryable
from ragstream.settings import Settings
from tests.embedding_server_real import (
    RealEmbeddingServer,
    ServerUnavailable,
    free_port,
    infinity_server,
)

pytestmark = [pytest.mark.torch, pytest.mark.timeout(600)]

SERVER_BATCH_LIMIT = 8  # INFINITY_MAX_CLIENT_BATCH_SIZE: more inputs in one request is a 422

TEXTS = [
    "Kafka keeps the events of every stage in partitioned, replicated topics.",
    "PostgreSQL stores the chunks and their vectors next to the documents.",
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval-augmented generation answers questions from retrieved passages.",
    "Ein Dokument wird zerlegt, in Abschnitte geteilt und eingebettet.",
    "Les vecteurs sont normalisés avant d'être enregistrés.",
    "x",
    "Invoices are due within 30 days; late payments accrue 1.5% interest a month.",
    "A rate limit of 1,000,000 tokens per minute applies to the embedding model.",
    "def embed(texts): return [model(t) for t in texts]",
    " ".join(["The pipeline parses, chunks, embeds and indexes each document."] * 12),
    "Das Wetter ist heute sonnig, morgen regnet es.",
]


# --- the server and a proxy in front of it ----------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealEmbeddingServer]:
    try:
        with infinity_server(
            tmp_path_factory.mktemp("infinity"), max_client_batch_size=SERVER_BATCH_LIMIT
        ) as running:
            yield running
    except ServerUnavailable as exc:  # an error of this test run, never a skip
        pytest.fail(f"the real embedding server did not start: {exc}", pytrace=False)


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one request instead of forwarding it at once."""

    status: int = 0  # answer this status itself (with ``retry_after``, when given)
    retry_after: str | None = None
    stall_s: float = 0.0  # hold the request this long, then forward it


@dataclass
class Seen:
    at: float  # time.monotonic() when the request arrived
    inputs: int
    dimensions: int | None
    status: int = 0


@dataclass
class FaultProxy:
    """A reverse proxy on the loopback: forwards to ``upstream``, faults on demand."""

    upstream: str
    faults: deque[Fault] = field(default_factory=deque)  # one per request, in order
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse_dimensions: bool = False  # answer a request with `dimensions` as vLLM does
    httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def take(self, inputs: int, dimensions: int | None) -> tuple[Fault | None, Seen]:
        with self.lock:
            seen = Seen(time.monotonic(), inputs, dimensions)
            self.seen.append(seen)
            return (self.faults.popleft() if self.faults else None), seen

    def forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        target = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


VLLM_REFUSES_DIMENSIONS = json.dumps(
    {
        "object": "error",
        "message": 'Model "all-MiniLM-L6-v2" does not support matryoshka representation, '
        "changing output dimensions will lead to poor results.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
).encode()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                request = json.loads(body)
                inputs, dimensions = len(request["input"]), request.get("dimensions")
            except (ValueError, KeyError, TypeError):
                inputs, dimensions = -1, None
            fault, seen = proxy.take(inputs, dimensions)
            if proxy.refuse_dimensions and dimensions is not None:
                seen.status = 400
                self._answer(400, VLLM_REFUSES_DIMENSIONS, None)
                return
            if fault is not None and fault.status:
                seen.status = fault.status
                self._answer(fault.status, b'{"error": {"message": "injected"}}', fault)
                return
            if fault is not None and fault.stall_s:
                time.sleep(fault.stall_s)
            keep = ("Content-Type", "Authorization")
            headers = {k: v for k in keep if (v := self.headers.get(k)) is not None}
            status, answer = proxy.forward(self.path, body, headers)
            seen.status = status
            with contextlib.suppress(OSError):  # a client that timed out has gone
                self._answer(status, answer, None)

        def _answer(self, status: int, body: bytes, fault: Fault | None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if fault is not None and fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def proxy(server: RealEmbeddingServer) -> Iterator[FaultProxy]:
    upstream = server.base_url.removesuffix("/v1")
    fault_proxy = FaultProxy(upstream)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fault_proxy))
    httpd.daemon_threads = True
    fault_proxy.httpd = httpd
    thread = threading.Thread(target=httpd.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield fault_proxy
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def openai_settings(base_url: str, server: RealEmbeddingServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "embedder": "openai",
        "openai_base_url": base_url,
        "openai_model": server.model,
        "openai_api_key": server.api_key,
        "openai_dimensions": 384,
        "openai_timeout_s": 30.0,
        "embed_batch_size": SERVER_BATCH_LIMIT,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def local_vectors(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The same texts through ragstream's own MiniLM on ONNX Runtime."""
    settings = Settings(
        embedder="minilm",
        embed_runtime="onnx",
        embed_precision="fp32",  # what the server runs
        embed_threads=1,
        cache_dir=tmp_path_factory.mktemp("onnx-cache"),
    )
    with make_embedder(settings) as local:
        return np.asarray(local.embed(TEXTS))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    result: np.ndarray = (a * b).sum(axis=1)
    return result


def embed_retrying(
    embedder: Embedder, texts: Sequence[str], policy: RetryPolicy
) -> tuple[list[list[float]], list[tuple[EndpointUnavailable, float]]]:
    """What the stage runner does: retry a retryable failure after the policy's delay."""
    waits: list[tuple[EndpointUnavailable, float]] = []
    for attempt in range(1, 20):
        try:
            return embedder.embed(texts), waits
        except EndpointUnavailable as exc:
            decision = policy.decide(exc, attempt=attempt, messages=1)
            assert decision.action is Action.RETRY, decision
            waits.append((exc, decision.delay_s))
            time.sleep(decision.delay_s)
    raise AssertionError(f"still failing after 19 attempts: {waits}")


# --- the vectors --------------------------------------------------------------------------
def test_vectors_match_the_local_minilm(
    server: RealEmbeddingServer, local_vectors: np.ndarray
) -> None:
    with make_embedder(openai_settings(server.base_url, server)) as remote:
        assert isinstance(remote, OpenAIEmbedder)
        vectors = np.asarray(remote.embed(TEXTS))
        assert remote.served_model_id == server.model
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    similarity = cosines(vectors, local_vectors)
    assert similarity.min() >= 0.999, (similarity, server.log_tail())


def test_dimensions_are_asked_for_and_honoured(
    server: RealEmbeddingServer, local_vectors: np.ndarray
) -> None:
    """infinity takes ``dimensions`` as a Matryoshka cut: the first 128 of the 384."""
    with make_embedder(openai_settings(server.base_url, server, openai_dimensions=128)) as cut:
        vectors = np.asarray(cut.embed(TEXTS[:5]))
    assert vectors.shape == (5, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert cosines(vectors, local_vectors[:5, :128]).min() >= 0.999


def test_more_dimensions_than_the_model_has_is_a_permanent_error(
    server: RealEmbeddingServer, proxy: FaultProxy
) -> None:
    """infinity refuses 512 of a 384-d model (400, naming matryoshka); asked again without
    ``dimensions``, it sends 384: the size check refuses that, for good."""
    settings = openai_settings(proxy.base_url, server, openai_dimensions=512)
    with make_embedder(settings) as big, pytest.raises(EndpointRejected) as refused:
        big.embed(["one text", "two texts"])
    assert "384-d vectors, 512 required" in refused.value.message
    assert is_permanent(refused.value) and not is_retryable(refused.value)
    assert [(s.inputs, s.dimensions, s.status) for s in proxy.seen] == [
        (2, 512, 400),
        (2, None, 200),
    ]


def test_a_server_refusing_dimensions_is_asked_without_them(
    server: RealEmbeddingServer, proxy: FaultProxy, local_vectors: np.ndarray
) -> None:
    """vLLM answers 400 to ``dimensions`` for a model without Matryoshka training (as
    MiniLM): the proxy answers so, and the client goes on without the parameter."""
    proxy.refuse_dimensions = True
    with make_embedder(openai_settings(proxy.base_url, server)) as embedder:
        vectors = np.asarray(embedder.embed(TEXTS))
        embedder.embed(TEXTS[:1])
    assert [(s.inputs, s.dimensions, s.status) for s in proxy.seen] == [
        (8, 384, 400),
        (8, None, 200),
        (4, None, 200),
        (1, None, 200),
    ]
    assert cosines(vectors, local_vectors).min() >= 0.999


def test_a_wrong_api_key_is_refused_for_good(server: RealEmbeddingServer) -> None:
    settings = openai_settings(server.base_url, server, openai_api_key="not-the-key")
    with make_embedder(settings) as embedder, pytest.raises(EndpointRejected) as refused:
        embedder.embed(["one text"])
    assert refused.value.status_code == 401


# --- batching by the server's limit -------------------------------------------------------
def test_batches_stay_within_the_server_limit(
    server: RealEmbeddingServer, proxy: FaultProxy, local_vectors: np.ndarray
) -> None:
    with make_embedder(openai_settings(proxy.base_url, server)) as embedder:
        vectors = np.asarray(embedder.embed(TEXTS))
    assert [s.inputs for s in proxy.seen] == [8, 4]
    assert {s.status for s in proxy.seen} == {200}
    assert cosines(vectors, local_vectors).min() >= 0.999


def test_a_batch_over_the_server_limit_is_halved_until_it_passes(
    server: RealEmbeddingServer, proxy: FaultProxy, local_vectors: np.ndarray
) -> None:
    """RAGSTREAM_EMBED_BATCH_SIZE above what the server takes: 422, halved, remembered."""
    with make_embedder(openai_settings(proxy.base_url, server, embed_batch_size=32)) as embedder:
        vectors = np.asarray(embedder.embed(TEXTS))  # 12 texts: 422, then 6 + 6
        assert [(s.inputs, s.status) for s in proxy.seen] == [(12, 422), (6, 200), (6, 200)]
        assert cosines(vectors, local_vectors).min() >= 0.999

        proxy.seen.clear()
        again = np.asarray(embedder.embed(TEXTS))  # the halved size is kept
        assert [(s.inputs, s.status) for s in proxy.seen] == [(6, 200), (6, 200)]
        np.testing.assert_allclose(again, vectors, atol=1e-6)


# --- outages: 429 and 5xx with Retry-After, timeouts, no server ---------------------------
def test_429_and_503_with_retry_after_are_waited_out_then_succeed(
    server: RealEmbeddingServer, proxy: FaultProxy, local_vectors: np.ndarray
) -> None:
    proxy.fail_next(Fault(429, retry_after="2"), Fault(503, retry_after="1"))
    policy = RetryPolicy(initial_s=0.05, max_s=0.2, max_attempts=8)
    with make_embedder(openai_settings(proxy.base_url, server)) as embedder:
        began = time.monotonic()
        vectors, waits = embed_retrying(embedder, TEXTS[:4], policy)
        elapsed = time.monotonic() - began

    assert [(exc.status_code, exc.retry_after_s) for exc, _ in waits] == [(429, 2.0), (503, 1.0)]
    for exc, delay in waits:
        # A dependency outage: retryable, never the document's failure.
        assert is_retryable(exc) and not is_permanent(exc)
        assert exc.retry_after_s is not None and delay >= exc.retry_after_s
    statuses = [s.status for s in proxy.seen]
    assert statuses == [429, 503, 200]
    gaps = [b.at - a.at for a, b in zip(proxy.seen, proxy.seen[1:], strict=False)]
    assert gaps[0] >= 2.0 and gaps[1] >= 1.0, gaps  # never sooner than Retry-After
    assert elapsed >= 3.0
    assert cosines(np.asarray(vectors), local_vectors[:4]).min() >= 0.999


def test_an_outage_never_fails_the_document_while_the_endpoint_is_down(
    server: RealEmbeddingServer, proxy: FaultProxy
) -> None:
    """Past max_attempts, the runner asks whether the embedder answers (a probe text):
    while it answers 503, the batch is retried, not split nor dead-lettered."""
    proxy.fail_next(Fault(503, retry_after="0"), Fault(503, retry_after="0"))
    policy = RetryPolicy(initial_s=0.01, max_s=0.02, max_attempts=2)
    with make_embedder(openai_settings(proxy.base_url, server)) as embedder:
        with pytest.raises(EndpointUnavailable) as down:
            embedder.embed(TEXTS[:3])

        def embedder_answers() -> bool:
            try:
                embedder.embed(["probe"])
            except EndpointUnavailable:
                return False
            return True

        decision = policy.decide(
            down.value, attempt=5, messages=3, dependencies_answer=embedder_answers
        )
        assert decision.action is Action.RETRY
        assert embedder.embed(["the endpoint is back"])  # the second 503 was the probe's
    assert [s.status for s in proxy.seen] == [503, 503, 200]


def test_a_request_timeout_is_a_retryable_outage(
    server: RealEmbeddingServer, proxy: FaultProxy
) -> None:
    proxy.fail_next(Fault(stall_s=3.0))
    settings = openai_settings(proxy.base_url, server, openai_timeout_s=0.5)
    with make_embedder(settings) as embedder:
        began = time.monotonic()
        with pytest.raises(EndpointUnavailable, match="timed out") as slow:
            embedder.embed(TEXTS[:2])
        assert time.monotonic() - began < 2.5  # the timeout, not the stall, ended it
        assert is_retryable(slow.value) and not is_permanent(slow.value)
        assert len(embedder.embed(TEXTS[:2])) == 2  # the next request is not stalled


def test_no_server_listening_is_a_retryable_outage(server: RealEmbeddingServer) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    with (
        make_embedder(openai_settings(nobody, server)) as embedder,
        pytest.raises(EndpointUnavailable, match="unreachable") as down,
    ):
        embedder.embed(["text"])
    assert is_retryable(down.value) and not is_permanent(down.value)


# --- the token budget ---------------------------------------------------------------------
def test_requests_are_paced_by_the_tokens_per_minute_budget(
    server: RealEmbeddingServer, proxy: FaultProxy
) -> None:
    """RAGSTREAM_OPENAI_TOKENS_PER_MINUTE: a bucket holding one minute's tokens, refilled
    continuously. The requests are real; the clock only moves when the embedder sleeps,
    so each wait shows exactly."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    settings = openai_settings(proxy.base_url, server, openai_tokens_per_minute=60)
    built = make_embedder(settings)  # the setting reaches the embedder users get
    assert built._budget is not None
    built.close()
    with OpenAIEmbedder(  # what make_embedder builds, with the clock and sleep of the test
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        api_key=server.api_key,
        dimensions=settings.openai_dimensions,
        max_input_tokens=settings.openai_max_input_tokens,
        timeout_s=settings.openai_timeout_s,
        batch_size=2,
        tokens_per_minute=settings.openai_tokens_per_minute,
        clock=lambda: now[0],
        sleep=sleep,
    ) as embedder:
        twenty = " ".join(["apple"] * 20)
        assert embedder.count_tokens(twenty) == 20
        # 60 tokens a minute is 1 a second; 4 requests of 40 tokens: the first fits the
        # full bucket, the second waits for the 20 it lacks, the others for all 40.
        vectors = embedder.embed([twenty] * 8)
        assert slept == pytest.approx([20.0, 40.0, 40.0])
        # A request over the whole budget (100 tokens) waits for a full bucket and leaves
        # a debt of 40 that the next one (40 tokens) waits off too: 1 token a second still.
        slept.clear()
        fifty = " ".join(["apple"] * 50)
        embedder.embed([fifty, fifty, twenty, twenty])
        assert slept == pytest.approx([60.0, 80.0])
    assert len(vectors) == 8
    assert [s.inputs for s in proxy.seen] == [2, 2, 2, 2, 2, 2]
    assert {s.status for s in proxy.seen} == {200}
