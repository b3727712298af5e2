"""``ragstream ingest --api URL``: the same ingest, through the HTTP API instead of the database.

Files stream from disk (never read whole here); the answers fill the same
:class:`~ragstream.ingest.Item` rows the direct ingest reports.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from ragstream.ingest import Item, collect_files
from ragstream.state import is_terminal

POLL_S = 0.5


def submit_paths_via_api(
    url: str, api_key: str, paths: list[Path], *, wait: bool, timeout_s: float
) -> list[Item]:
    items: list[Item] = []
    jobs: dict[int, str] = {}
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300) as client:
        for path in collect_files(paths):
            item = Item(path=str(path))
            items.append(item)
            try:
                with path.open("rb") as handle:
                    answer = client.post("/v1/documents", files={"file": (path.name, handle)})
            except FileNotFoundError:
                item.failed_stage, item.error = "upload", "no such file"
                continue
            if answer.status_code not in (200, 202):
                item.failed_stage = "upload"
                item.error = f"upload: HTTP {answer.status_code}: {_detail(answer)}"
                continue
            accepted = answer.json()["documents"][0]
            item.document_id = uuid.UUID(accepted["document_id"])
            item.status = accepted["status"]
            jobs[len(items) - 1] = accepted["status_url"]
        if wait:
            _follow(client, items, jobs, timeout_s)
    return items


def _follow(
    client: httpx.Client, items: list[Item], jobs: dict[int, str], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(jobs)
    while pending and time.monotonic() < deadline:
        for index, job_url in list(pending.items()):
            job = client.get(job_url).json()
            item = items[index]
            item.status = job["status"]
            item.chunks, item.vectors = job["chunks_total"] or 0, job["chunks_embedded"]
            if job["error"]:
                item.failed_stage, item.error = job["error"]["stage"], job["error"]["message"]
            if is_terminal(job["status"]):
                del pending[index]
        if pending:
            time.sleep(POLL_S)


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text))[:300]
    except ValueError:
        return answer.text[:300]
