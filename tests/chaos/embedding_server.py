"""A small OpenAI-compatible ``/v1/embeddings`` endpoint for tests, on a loopback port.

Vectors are deterministic (the hash embedder's, reversed, so they differ from
the ``hash`` model's); the first ``slow_requests`` requests each take
``delay_s``, which is how a test makes a batch slower than
``max.poll.interval.ms``. Every text it was asked for is counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ragstream.embedding import HashEmbedder


class EmbeddingServer:
    def __init__(self, *, delay_s: float = 0.0, slow_requests: int = 0) -> None:
        self.delay_s = delay_s
        self.slow_requests = slow_requests
        self.requests = 0
        self.slow_served = 0
        self.texts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._embedder = HashEmbedder(384)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> EmbeddingServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in body["input"]]
        with self._lock:
            self.requests += 1
            slow = self.requests <= self.slow_requests
            self.texts.update(texts)
        if slow:
            time.sleep(self.delay_s)
            with self._lock:
                self.slow_served += 1
        vectors = [v[::-1] for v in self._embedder.embed(texts)]
        return {
            "object": "list",
            "model": body.get("model", "test"),
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                answer = json.dumps(server._answer(json.loads(self.rfile.read(length)))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
