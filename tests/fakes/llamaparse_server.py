"""A fake LlamaParse: a real HTTP server on 127.0.0.1 speaking the endpoints ragstream uses.

``POST /api/v1/parsing/upload`` (multipart ``file`` + ``webhook_url``) starts a
job; after ``delay_s`` the job succeeds (its "parse" is the file's text, one
page per form feed) and the server POSTs a Standard-Webhooks-signed callback to
the job's webhook URL, retrying non-2xx answers as a real sender would.
``GET /api/v1/parsing/job/{id}`` and ``.../result/json`` answer status and pages.

Switches make it misbehave: ``drop_webhooks`` (the callback is lost),
``never_finish`` (the job stays PENDING), ``fail_jobs`` (ERROR + parse.error),
``inline_result`` (the pages travel in the callback body). ``send_webhook``
sends any callback on demand, including forged, tampered, stale or unsigned ones.

The signature is computed here independently of ragstream's verifier.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from python_multipart.multipart import parse_form


@dataclass
class FakeJob:
    id: str
    filename: str
    content: bytes
    webhook_url: str
    status: str = "PENDING"
    error: str | None = None

    def pages(self) -> list[dict[str, Any]]:
        text = self.content.decode("utf-8", "replace")
        return [
            {"page": n, "md": page, "text": page}
            for n, page in enumerate(text.split("\f"), start=1)
        ]


@dataclass
class Delivery:
    webhook_id: str
    job_id: str
    status_code: int | None


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = (
        base64.b64decode(secret.removeprefix("whsec_"))
        if secret.startswith("whsec_")
        else secret.encode()
    )
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, signed, "sha256")
    return "v1," + base64.b64encode(mac.digest()).decode()


@dataclass
class FakeLlamaParse:
    api_key: str
    webhook_secret: str
    delay_s: float = 0.3
    drop_webhooks: bool = False
    never_finish: bool = False
    fail_jobs: bool = False
    inline_result: bool = False
    webhook_attempts: int = 5
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> FakeLlamaParse:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what a test drives ----------------------------------------------
    def callback_body(self, job: FakeJob, *, inline: bool | None = None) -> bytes:
        failed = job.status == "ERROR"
        payload: dict[str, Any] = {
            "event_type": "parse.error" if failed else "parse.success",
            "data": {"job_id": job.id, "status": job.status},
        }
        if failed:
            payload["data"]["error"] = job.error
        elif self.inline_result if inline is None else inline:
            payload["data"]["json"] = job.pages()
        return json.dumps(payload).encode()

    def send_webhook(
        self,
        job_id: str,
        *,
        webhook_id: str | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
        body: bytes | None = None,
        tamper: bool = False,
        omit: tuple[str, ...] = (),
        url: str | None = None,
    ) -> httpx.Response:
        """One callback for ``job_id``, signed (or mis-signed) as the arguments say."""
        job = self.jobs[job_id]
        body = self.callback_body(job) if body is None else body
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret or self.webhook_secret, webhook_id, timestamp, body),
        }
        for name in omit:
            headers.pop(name)
        if tamper:
            body = body.replace(b'"status"', b'"statuz"', 1) + b" "
        return httpx.post(url or job.webhook_url, content=body, headers=headers, timeout=30)

    def finish(self, job_id: str) -> None:
        """End the job now (as the timer would) and deliver its callback unless dropped."""
        job = self.jobs[job_id]
        if self.fail_jobs:
            job.status, job.error = "ERROR", "the document could not be read"
        else:
            job.status = "SUCCESS"
        if self.drop_webhooks:
            return
        webhook_id = f"msg_{uuid.uuid4().hex}"
        for attempt in range(self.webhook_attempts):
            try:
                answer = self.send_webhook(job_id, webhook_id=webhook_id).status_code
            except httpx.HTTPError:
                answer = None
            with self._lock:
                self.deliveries.append(Delivery(webhook_id, job_id, answer))
            if answer is not None and answer < 300:
                return
            time.sleep(0.3 * 2**attempt)

    # --- the HTTP side -----------------------------------------------------
    def _start_job(self, content: bytes, filename: str, webhook_url: str) -> FakeJob:
        job = FakeJob(f"lp-{uuid.uuid4()}", filename, content, webhook_url)
        self.jobs[job.id] = job
        if not self.never_finish:
            timer = threading.Timer(self.delay_s, self.finish, args=(job.id,))
            timer.daemon = True
            timer.start()
        return job

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {fake.api_key}":
                    return True
                self._json(401, {"detail": "Invalid authentication token"})
                return False

            def do_POST(self) -> None:
                fake.requests.append(f"POST {self.path}")
                if self.path != "/api/v1/parsing/upload":
                    self._json(404, {"detail": "Not Found"})
                    return
                if not self._authorized():
                    return
                fields: dict[str, bytes] = {}
                files: dict[str, tuple[str, bytes]] = {}

                def on_field(f: Any) -> None:
                    fields[f.field_name.decode()] = f.value or b""

                def on_file(f: Any) -> None:
                    f.file_object.seek(0)
                    name = (f.file_name or b"document").decode()
                    files[f.field_name.decode()] = (name, f.file_object.read())

                headers = {
                    "Content-Type": self.headers.get("Content-Type", ""),
                    "Content-Length": self.headers.get("Content-Length", "0"),
                }
                parse_form(headers, self.rfile, on_field, on_file)
                if "file" not in files or "webhook_url" not in fields:
                    self._json(400, {"detail": "file and webhook_url are required"})
                    return
                filename, content = files["file"]
                job = fake._start_job(content, filename, fields["webhook_url"].decode())
                self._json(200, {"id": job.id, "status": job.status})

            def do_GET(self) -> None:
                fake.requests.append(f"GET {self.path}")
                parts = self.path.strip("/").split("/")
                if parts[:4] != ["api", "v1", "parsing", "job"] or len(parts) < 5:
                    self._json(404, {"detail": "Not Found"})
                    return
                if not self._authorized():
                    return
                job = fake.jobs.get(parts[4])
                if job is None:
                    self._json(404, {"detail": "Job not found"})
                elif len(parts) == 5:
                    answer = {"id": job.id, "status": job.status, "error_message": job.error}
                    self._json(200, answer)
                elif parts[5:] == ["result", "json"] and job.status == "SUCCESS":
                    self._json(200, {"pages": job.pages(), "job_metadata": {"job_pages": 1}})
                else:
                    self._json(404, {"detail": "No result"})

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
