"""Any OpenAI-compatible ``/v1/embeddings`` endpoint, over httpx.

Errors are mapped once, here, onto the pipeline's policy: HTTP 408/429/5xx,
timeouts and network errors may pass, so they are retryable
(:class:`EndpointUnavailable`, with the server's Retry-After when given);
other 4xx mean the request itself is wrong (:class:`EndpointRejected`).

Limits of the endpoint: texts go ``batch_size`` to a request; a multi-text request
answered 400, 413 or 422 (how OpenAI, TEI and infinity refuse more inputs than they
take in one request) is sent again in halves, and the halved size is kept (unless the
refusal turns out to be one input's, which raises as before). With
``tokens_per_minute``, requests are paced by a token bucket holding one minute's
budget, so a TPM rate limit is not hit in the first place. A 400 that names the
``dimensions`` parameter (vLLM refuses it for a model that cannot shorten its
vectors) is asked again without it, for good; the vectors' size is still checked.

Token counting: with ``tiktoken`` installed (and its encoding available
offline or downloadable), tokens are counted with the model's encoding
(``cl100k_base`` for unknown models). Otherwise the bundled MiniLM WordPiece
tokenizer is used as an approximation; it usually counts more tokens than the
BPE encodings of OpenAI models for English, and chunks (256 tokens by default)
stay far below these models' input limits either way.
"""

from __future__ import annotations

import email.utils
import importlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from ragstream import tracing
from ragstream.chunking.tokenizer import minilm_counter
from ragstream.embedding.base import Embedder, EndpointRejected, EndpointUnavailable, l2_normalize

_RETRYABLE_STATUS = frozenset({408, 429})
# What a server answers a request with more inputs than it takes (OpenAI and Azure 400,
# TEI 413, infinity 422); the same codes for a bad input cost a few halvings, then raise.
_BATCH_TOO_LARGE_STATUS = frozenset({400, 413, 422})
_BODY_EXCERPT_CHARS = 300


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _tiktoken_counter(model: str) -> tuple[Callable[[str], int], str] | None:
    try:
        tiktoken: Any = importlib.import_module("tiktoken")  # optional, untyped
    except ImportError:
        return None
    try:
        try:
            encoding = tiktoken.encoding_for_model(model)
        except KeyError:
            encoding = tiktoken.get_encoding("cl100k_base")
    except Exception:  # the encoding file could not be loaded (e.g. offline)
        return None

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return count, f"tiktoken:{encoding.name}"


class OpenAIEmbedder(Embedder):
    """Embeds through ``POST {base_url}/embeddings`` and asks for ``dimensions``."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        dimensions: int,
        max_input_tokens: int,
        timeout_s: float,
        batch_size: int = 16,
        tokens_per_minute: int = 0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = f"openai:{model}"
        self.version = f"d{dimensions}"
        self.dimensions = dimensions
        self.max_input_tokens = max_input_tokens
        self._model = model
        self._batch_size = max(1, batch_size)
        self._send_dimensions = True
        self._budget = _TokenBucket(tokens_per_minute, clock, sleep) if tokens_per_minute else None
        self._url = base_url.rstrip("/") + "/embeddings"
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)
        tracing.instrument_http_client(self._client)
        tiktoken_counter = _tiktoken_counter(model)
        if tiktoken_counter is None:
            minilm = minilm_counter()
            self._count: Callable[[str], int] = minilm.count
            self._count_batch: Callable[[Sequence[str]], list[int]] = minilm.count_batch
            self.tokenizer_name = "minilm-wordpiece"
        else:
            count, self.tokenizer_name = tiktoken_counter
            self._count = count
            self._count_batch = lambda texts: [count(t) for t in texts]

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return self._count_batch(texts)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        configured = self._batch_size
        start = 0
        while start < len(texts):
            batch = list(texts[start : start + self._batch_size])
            if self._budget is not None:
                self._budget.take(sum(self._count_batch(batch)))
            try:
                out.extend(self._embed_batch(batch))
            except EndpointRejected as exc:
                if self._send_dimensions and _refuses_dimensions(exc):
                    self._send_dimensions = False
                    continue
                if len(batch) > 1 and exc.status_code in _BATCH_TOO_LARGE_STATUS:
                    self._batch_size = len(batch) // 2  # perhaps over the server's limit
                    continue
                if self._batch_size < configured and len(batch) == 1:
                    self._batch_size = configured  # it was this input, not the batch size
                raise
            start += len(batch)
        return out

    def close(self) -> None:
        self._client.close()

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        payload: dict[str, Any] = {"model": self._model, "input": texts}
        if self._send_dimensions:
            payload["dimensions"] = self.dimensions
        payload["encoding_format"] = "float"
        try:
            response = self._client.post(self._url, json=payload)
        except httpx.TimeoutException as exc:
            raise EndpointUnavailable(f"embedding request to {self._url} timed out") from exc
        except httpx.TransportError as exc:
            raise EndpointUnavailable(
                f"embedding endpoint {self._url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        status = response.status_code
        if status in _RETRYABLE_STATUS or status >= 500:
            raise EndpointUnavailable(
                f"embedding endpoint answered HTTP {status}: {_excerpt(response)}",
                status_code=status,
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise EndpointRejected(
                f"embedding endpoint rejected the request with HTTP {status}: {_excerpt(response)}",
                status_code=status,
            )
        if status != 200:
            raise EndpointUnavailable(
                f"embedding endpoint answered HTTP {status}, expected 200", status_code=status
            )
        return self._parse(response, len(texts))

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        """The vectors in input order; a malformed body is treated as a passing fault."""
        try:
            body: Any = response.json()
            items = sorted(body["data"], key=lambda item: int(item["index"]))
            rows = [item["embedding"] for item in items]
            vectors = np.asarray(rows, dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise EndpointUnavailable(
                f"embedding endpoint sent a malformed body: {_excerpt(response)}",
                status_code=response.status_code,
            ) from exc
        if len(rows) != expected:
            raise EndpointUnavailable(
                f"embedding endpoint returned {len(rows)} vectors for {expected} inputs",
                status_code=response.status_code,
            )
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            got = vectors.shape[1] if vectors.ndim == 2 else "ragged"
            raise EndpointRejected(
                f"model {self._model!r} returned {got}-d vectors, {self.dimensions} required; "
                "it must support the 'dimensions' parameter",
                status_code=response.status_code,
            )
        if not np.isfinite(vectors).all():
            raise EndpointRejected("embedding endpoint returned non-finite values")
        served = body.get("model") if isinstance(body, dict) else None
        if isinstance(served, str):
            self.served_model_id = served
        result: list[list[float]] = l2_normalize(vectors).tolist()
        return result


def _refuses_dimensions(exc: EndpointRejected) -> bool:
    """A 400 about the ``dimensions`` parameter itself (vLLM: "does not support matryoshka
    representation, changing output dimensions ...")."""
    text = exc.message.lower()
    return exc.status_code == 400 and ("dimensions" in text or "matryoshka" in text)


class _TokenBucket:
    """At most ``per_minute`` tokens a minute: a bucket of that size refilled continuously.

    A request larger than the whole bucket waits for a full one and leaves a debt that
    later requests wait off, so the average rate stays within the budget.
    """

    def __init__(
        self, per_minute: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._capacity = float(per_minute)
        self._per_s = per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._available = self._capacity
        self._at = clock()

    def take(self, tokens: int) -> None:
        need = min(float(tokens), self._capacity)
        while True:
            now = self._clock()
            self._available = min(self._capacity, self._available + (now - self._at) * self._per_s)
            self._at = now
            if self._available >= need - 1e-9:  # (float error of the refill)
                break
            self._sleep((need - self._available) / self._per_s)
        self._available -= tokens


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if len(text) > _BODY_EXCERPT_CHARS:
        text = text[:_BODY_EXCERPT_CHARS] + "..."
    return text or "(empty body)"
