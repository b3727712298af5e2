"""Running the real pipeline in tests: worker processes, submission, waiting, expectations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message
from pydantic import SecretStr
from sqlalchemy import func, select

from ragstream.blobstore import s3_client
from ragstream.chunking import ChunkerConfig, chunk_document
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document
from ragstream.devstack.s3proxy import S3Endpoint
from ragstream.embedding.budget import token_budget
from ragstream.kafka import consumer_config, create_topics
from ragstream.parsing import parse_bytes
from ragstream.producers.producer import EventProducer
from ragstream.producers.submit import Submitter
from ragstream.progress import DocumentProgress, documents_progress
from ragstream.schemas.codec import make_codec
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from ragstream.topology import STAGE_NAMES


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker process build the same settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"RAGSTREAM_{name.upper()}"] = str(value)
    return env


class Workers:
    """Real ``ragstream worker`` processes, as production runs them."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {s: [] for s in STAGE_NAMES}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, stage: str) -> subprocess.Popen[bytes]:
        n = sum(1 for _ in self.log_dir.glob(f"{stage}-*.log"))
        with open(self.log_dir / f"{stage}-{n}.log", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ragstream.cli", "worker", stage],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"},
            )
        self.procs[stage].append(proc)
        return proc

    def start_all(self, stages: Iterable[str] = STAGE_NAMES) -> None:
        for stage in stages:
            self.start(stage)

    def alive(self, stage: str) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs[stage] if p.poll() is None]

    def kill(self, stage: str, sig: int = signal.SIGKILL) -> int:
        """Signal one live worker of ``stage``; returns how many were signalled (0 or 1)."""
        for proc in self.alive(stage):
            proc.send_signal(sig)
            proc.wait(timeout=60)
            return 1
        return 0

    def stop_all(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        for procs in self.procs.values():
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )


def prepare(settings: Settings) -> Submitter:
    create_topics(settings)
    return Submitter(settings, make_engine(settings), EventProducer(settings), make_codec(settings))


def submit_all(submitter: Submitter, files: list[tuple[str, bytes]]) -> list[uuid.UUID]:
    return [submitter.submit(data, filename=name).document_id for name, data in files]


def wait_terminal(
    settings: Settings, ids: list[uuid.UUID], timeout_s: float, workers: Workers | None = None
) -> dict[uuid.UUID, DocumentProgress]:
    engine = make_engine(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            states = documents_progress(engine, ids)
            if len(states) == len(set(ids)) and all(s.terminal for s in states.values()):
                return states
            if time.monotonic() > deadline:
                pending = {str(k): v.status for k, v in states.items() if not v.terminal}
                raise AssertionError(
                    f"{len(pending)} documents not terminal after {timeout_s}s: "
                    f"{list(pending.items())[:5]}\n{workers.logs() if workers else ''}"
                )
            time.sleep(0.3)
    finally:
        engine.dispose()


def expected_chunks(settings: Settings, files: list[tuple[str, bytes]]) -> dict[str, int]:
    """The chunker alone on the same inputs: what the pipeline must produce, per file."""
    budget = token_budget(settings)
    config = ChunkerConfig(
        target_tokens=settings.chunk_target_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        max_tokens=budget.max_input_tokens,
    )
    return {
        name: len(chunk_document(parse_bytes(data, name), config, budget.count_tokens))
        for name, data in files
    }


def table_counts(settings: Settings) -> dict[str, Any]:
    from sqlalchemy import text

    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*), count(DISTINCT id) FROM {table}")).one()
                for table in (
                    "documents",
                    "jobs",
                    "document_parse_buffer",
                    "document_chunk_buffer",
                    "document_vector_buffer",
                )
            }
    finally:
        engine.dispose()


def read_topic(settings: Settings, topic: str, expect: int, timeout_s: float = 30) -> list[Message]:
    """Up to ``expect`` records of the world's ``topic`` (a logical name), from the start."""
    consumer = Consumer(consumer_config(settings, f"reader-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic(topic)])
    found: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            found.append(msg)
    consumer.close()
    return found


def with_s3(settings: Settings, endpoint: S3Endpoint) -> Settings:
    """``settings`` pointed at the test S3 server."""
    return settings.model_copy(
        update={
            "s3_endpoint_url": endpoint.url,
            "s3_access_key_id": endpoint.access_key_id,
            "s3_secret_access_key": SecretStr(endpoint.secret_access_key),
        }
    )


def run_stages(settings: Settings, documents: int, *, after_parse: bool = False) -> None:
    """The four stages in this process (the last three with ``after_parse``), until the
    documents not yet complete are."""
    for stage in ("chunk",) if after_parse else ("parse", "chunk"):
        stats = build_runner(settings, stage).run(max_messages=documents, idle_timeout_s=20)
        assert stats.processed == documents, (stage, stats)
    engine = make_engine(settings)
    with engine.connect() as conn:
        chunks = conn.execute(
            select(func.count())
            .select_from(ChunkBuffer)
            .join(Document, Document.id == ChunkBuffer.document_id)
            .where(Document.status != DocumentStatus.COMPLETE.value)
        ).scalar_one()
    engine.dispose()
    for stage in ("embed", "finalize"):
        stats = build_runner(settings, stage).run(max_messages=chunks, idle_timeout_s=20)
        assert stats.processed == chunks, (stage, stats)


def new_bucket(settings: Settings, endpoint: S3Endpoint) -> tuple[Settings, Any, str]:
    """``settings`` pointed at the test S3 server, a client of it, and a new bucket there."""
    s3 = with_s3(settings, endpoint)
    client = s3_client(s3)
    bucket = f"b{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return s3, client, bucket
