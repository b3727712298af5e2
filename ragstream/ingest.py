"""``ragstream ingest``: submit files, then follow them to ``complete`` or ``failed``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragstream.errors import RagstreamError
from ragstream.producers.submit import Submitter
from ragstream.progress import DocumentProgress, documents_progress
from ragstream.state import DocumentStatus

_STAGE_BARS = (
    ("parse", DocumentStatus.PARSED),
    ("chunk", DocumentStatus.CHUNKED),
    ("embed", DocumentStatus.EMBEDDING),
    ("complete", DocumentStatus.COMPLETE),
)


@dataclass
class Item:
    path: str
    document_id: uuid.UUID | None = None
    status: str = "rejected"
    failed_stage: str | None = None
    error: str | None = None
    chunks: int = 0
    vectors: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "document_id": str(self.document_id) if self.document_id else None,
            "status": self.status,
            "failed_stage": self.failed_stage,
            "error": self.error,
            "chunks": self.chunks,
        }


def collect_files(paths: list[Path]) -> Iterator[Path]:
    """The files named and those under the directories named, sorted; hidden ones skipped."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path)
                if found.is_file() and not any(p.startswith(".") for p in rel.parts):
                    yield found
        else:
            yield path


def submit_paths(submitter: Submitter, paths: list[Path], max_bytes: int) -> list[Item]:
    items: list[Item] = []
    for path in collect_files(paths):
        item = Item(path=str(path))
        items.append(item)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                item.failed_stage, item.error = (
                    "upload",
                    f"file is {size} bytes, over the limit of {max_bytes}",
                )
                continue
            result = submitter.submit(path.read_bytes(), filename=path.name)
        except FileNotFoundError:
            item.failed_stage, item.error = "upload", "no such file"
            continue
        except RagstreamError as exc:
            item.failed_stage, item.error = "upload", f"upload: {exc.message}"
            continue
        item.document_id, item.status = result.document_id, result.status
    return items


def wait_for(
    submitter: Submitter,
    items: list[Item],
    *,
    timeout_s: float,
    console: Console | None,
) -> None:
    """Poll until every submitted document is terminal or the timeout passes; show bars."""
    ids = [i.document_id for i in items if i.document_id is not None]
    deadline = time.monotonic() + timeout_s
    progress = (
        Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        if console is not None
        else None
    )
    tasks = (
        {name: progress.add_task(name, total=len(ids)) for name, _ in _STAGE_BARS}
        if progress
        else {}
    )
    if progress is not None:
        progress.start()
    try:
        while True:
            states = documents_progress(submitter.engine, ids)
            if progress is not None:
                _update_bars(progress, tasks, states)
            if all(s.terminal for s in states.values()) and len(states) == len(ids):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
    finally:
        if progress is not None:
            progress.stop()
    for item in items:
        found = states.get(item.document_id) if item.document_id else None
        if found is not None:
            item.status, item.failed_stage, item.error = (
                found.status,
                found.failed_stage,
                found.error,
            )
            item.chunks, item.vectors = found.chunks, found.vectors


def _update_bars(
    progress: Progress, tasks: dict[str, Any], states: dict[uuid.UUID, DocumentProgress]
) -> None:
    failed = sum(1 for s in states.values() if s.status == DocumentStatus.FAILED)
    for name, status in _STAGE_BARS:
        done = sum(1 for s in states.values() if s.reached(status))
        label = f"{name}" + (f" ({failed} failed)" if name == "complete" and failed else "")
        progress.update(tasks[name], completed=done, description=label)


def summary(items: list[Item], elapsed_s: float) -> dict[str, Any]:
    submitted = [i for i in items if i.document_id is not None]
    return {
        "documents": len(items),
        "complete": sum(1 for i in items if i.status == DocumentStatus.COMPLETE),
        "failed": sum(1 for i in items if i.status in (DocumentStatus.FAILED, "rejected")),
        "stuck": sum(
            1 for i in submitted if i.status not in (DocumentStatus.COMPLETE, DocumentStatus.FAILED)
        ),
        "chunks": sum(i.chunks for i in items),
        "vectors": sum(i.vectors for i in items),
        "elapsed_s": round(elapsed_s, 3),
        "items": [i.as_json() for i in items],
    }
