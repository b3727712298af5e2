"""The LlamaParse REST calls we use: upload with a webhook URL, job status, JSON result.

Failures are classified once, here: network errors, timeouts, 429 and 5xx may
pass (:class:`LlamaParseUnavailable`, retryable); any other 4xx will not
(:class:`LlamaParseRejected`, permanent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import httpx

from ragstream import tracing
from ragstream.errors import PermanentError, RetryableError
from ragstream.settings import Settings

UPLOAD_PATH = "/api/v1/parsing/upload"
JOB_PATH = "/api/v1/parsing/job/{job_id}"
RESULT_PATH = "/api/v1/parsing/job/{job_id}/result/json"

SUCCESS = "SUCCESS"
PENDING = "PENDING"
FAILED_STATUSES = frozenset({"ERROR", "CANCELED", "CANCELLED"})


class LlamaParseUnavailable(RetryableError):
    """LlamaParse did not answer usefully now; the same call may succeed later."""


class LlamaParseRejected(PermanentError):
    """LlamaParse refused the request for good."""


@dataclass(frozen=True)
class Page:
    number: int
    markdown: str


@dataclass(frozen=True)
class JobStatus:
    status: str
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCESS

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


class LlamaParseClient:
    def __init__(self, settings: Settings) -> None:
        key = settings.llamaparse_api_key
        headers = {"Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        self._http = httpx.Client(
            base_url=settings.llamaparse_base_url.rstrip("/"),
            headers=headers,
            timeout=settings.llamaparse_timeout_s,
        )
        tracing.instrument_http_client(self._http)

    def upload(self, data: bytes, *, filename: str | None, webhook_url: str) -> str:
        """Start a parse job; LlamaParse calls ``webhook_url`` when it ends. Returns its id."""
        body = self._call(
            "POST",
            UPLOAD_PATH,
            files={"file": (filename or "document", data)},
            data={"webhook_url": webhook_url},
        )
        job_id = body.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise LlamaParseUnavailable(f"LlamaParse upload answered without a job id: {body}")
        return job_id

    def status(self, job_id: str) -> JobStatus:
        body = self._call("GET", JOB_PATH.format(job_id=job_id))
        error = body.get("error_message") or body.get("error")
        return JobStatus(str(body.get("status", PENDING)).upper(), str(error) if error else None)

    def result(self, job_id: str) -> list[Page]:
        return pages_from(self._call("GET", RESULT_PATH.format(job_id=job_id)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LlamaParseUnavailable(f"LlamaParse unreachable: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise LlamaParseUnavailable(
                f"LlamaParse {method} {path} answered {response.status_code}"
            )
        if response.status_code >= 400:
            raise LlamaParseRejected(
                f"LlamaParse {method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            body = response.json()
        except ValueError:
            raise LlamaParseUnavailable(f"LlamaParse {method} {path} answered non-JSON") from None
        if not isinstance(body, dict):
            raise LlamaParseUnavailable(f"LlamaParse {method} {path} answered a non-object")
        return body


def pages_from(body: dict[str, Any]) -> list[Page]:
    """Pages of a JSON result (``{"pages": [...]}``) or of a webhook body (``{"json": [...]}``)."""
    raw = body.get("pages")
    if raw is None:
        raw = body.get("json")
    if not isinstance(raw, list):
        raise LlamaParseRejected("LlamaParse result has no pages")
    pages: list[Page] = []
    for i, page in enumerate(raw, start=1):
        if not isinstance(page, dict):
            raise LlamaParseRejected(f"LlamaParse result page {i} is not an object")
        text = page.get("md")
        if not isinstance(text, str):
            text = page.get("text")
        number = page.get("page", i)
        if not isinstance(text, str) or not isinstance(number, int):
            raise LlamaParseRejected(f"LlamaParse result page {i} has no text or page number")
        pages.append(Page(number, text))
    return pages
