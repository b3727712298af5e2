"""What every chaos test shares: a workload whose fate is known in advance, a supervised crew
of real worker processes, and the exact accounting below.

The accounting, after the faults have healed:

* every good document ``complete`` with exactly the chunker's chunks and one
  vector per chunk; every bad one ``failed`` at the stage and with the error
  class it must carry; nothing stuck;
* no chunk twice (per document and index) and no vector twice (per chunk and
  model), and no id twice;
* the DLQs hold exactly the expected failures (counted by origin
  topic/partition/offset; redelivery may write a record twice, which is
  reported), each with its origin headers;
* every stage's consumer lag back to 0 (``progress.stage_lag``).

It ends with one summary line per test: documents, faults, lost, duplicates,
recovery time (from the last fault healed to lag 0 with every document done).
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from ragstream import ids, topology
from ragstream.db import blobs
from ragstream.db.engine import make_engine
from ragstream.db.models import Document
from ragstream.errors import RagstreamError
from ragstream.ops import dlq
from ragstream.producers.producer import EventProducer
from ragstream.producers.submit import Submitter
from ragstream.progress import documents_progress, stage_lag
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import DocumentParsed, DocumentUploaded, utc_now
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from ragstream.topology import STAGE_NAMES
from tests.chaos.hostile import Hostile
from tests.pipeline import Workers, expected_chunks

LONG = os.environ.get("RAGSTREAM_CHAOS_LONG") == "1"
TEST_TIMEOUT_S = 1500 if LONG else 300
SETTLE_TIMEOUT_S = 900 if LONG else 200


def chaos_settings(settings: Settings, **overrides: Any) -> Settings:
    """Small batches, so that faults land between many commits; the shortest session timeout
    the broker allows, so that a killed worker's partitions move on within seconds."""
    return settings.model_copy(update={"max_batch_size": 4, "session_timeout_s": 6, **overrides})


# --- the workload ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    name: str
    outcome: str  # complete | failed
    failed_stage: str | None = None
    error_class: str | None = None


@dataclass(frozen=True)
class Poison:
    """A raw message that is no valid work: it must land in its stage's DLQ and nowhere else."""

    stage: str
    what: str
    error_class: str


class Workload:
    """Documents to submit, each with its expected end; raw poison; expectations computed aside."""

    def __init__(
        self, settings: Settings, good: list[tuple[str, bytes]], hostile: Sequence[Hostile] = ()
    ) -> None:
        self.settings = settings
        self.items: list[tuple[str, bytes, Expected | None]] = [
            (name, data, Expected(name, "complete")) for name, data in good
        ]
        for h in hostile:
            if h.outcome == "complete":
                self.items.append((h.name, h.data, Expected(h.name, "complete")))
            elif h.outcome == "failed":
                self.items.append(
                    (h.name, h.data, Expected(h.name, "failed", h.failed_stage, h.error_class))
                )
            else:
                self.items.append((h.name, h.data, None))
        self.refusals = {h.name: h.error_class for h in hostile if h.outcome == "refused"}
        self.submitted: dict[uuid.UUID, Expected] = {}
        self.refused: dict[str, str] = {}
        self.refused_ids: set[uuid.UUID] = set()
        self.poison: list[Poison] = []
        # The chunker alone on the same inputs, while the pipeline works (10 MB take a while).
        pool = ThreadPoolExecutor(1, thread_name_prefix="expected-chunks")
        complete = [(n, d) for n, d, e in self.items if e is not None and e.outcome == "complete"]
        self._chunks: Future[dict[str, int]] = pool.submit(expected_chunks, settings, complete)
        pool.shutdown(wait=False)

    def interleave(self, seed: int) -> None:
        random.Random(seed).shuffle(self.items)

    @property
    def good(self) -> int:
        return sum(1 for _, _, e in self.items if e is not None and e.outcome == "complete")

    @property
    def bad(self) -> int:
        return sum(1 for _, _, e in self.items if e is not None and e.outcome == "failed")

    def chunks(self) -> dict[str, int]:
        return self._chunks.result(timeout=SETTLE_TIMEOUT_S)

    def submit(
        self, submitter: Submitter, *, pace_s: float = 0.0, start: int = 0, stop: int | None = None
    ) -> None:
        for name, data, expected in self.items[start:stop]:
            try:
                done = submitter.submit(data, filename=name)
            except RagstreamError as exc:
                self.refused[name] = exc.error_class
                self.refused_ids.add(document_id_of(self.settings, data))
                continue
            assert expected is not None, f"{name} was accepted; it must be refused at submission"
            self.submitted[done.document_id] = expected
            if pace_s:
                time.sleep(pace_s)

    def submit_in_background(self, submitter: Submitter, **kwargs: Any) -> Future[None]:
        pool = ThreadPoolExecutor(1, thread_name_prefix="submit")
        future = pool.submit(self.submit, submitter, **kwargs)
        pool.shutdown(wait=False)
        return future

    def inject_poison(self) -> None:
        """Undecodable bytes on every stage topic, and events whose blob does not exist."""
        s = self.settings
        producer, codec = EventProducer(s), make_codec(s)
        for spec in topology.STAGES.values():
            producer.send(s.topic(spec.input_topic), key=b"poison", value=b"\x00not an event\xff")
            self.poison.append(Poison(spec.name, "undecodable bytes", "UndecodableEvent"))
        ghost, job, sha = uuid.uuid4(), uuid.uuid4(), "0" * 64
        uploaded = DocumentUploaded(
            document_id=str(ghost),
            job_id=str(job),
            tenant=s.tenant,
            blob_sha256=sha,
            blob_uri=blobs.uri_for(sha),
            size_bytes=10,
            uploaded_at=utc_now(),
            filename="ghost.txt",
        )
        producer.send(s.topic(topology.UPLOADED), key=str(ghost), value=codec.encode(uploaded))
        self.poison.append(Poison("parse", "upload event of a missing blob", "MissingBlob"))
        parsed = DocumentParsed(
            document_id=str(ghost),
            job_id=str(job),
            tenant=s.tenant,
            text_blob_sha256=sha,
            text_blob_uri=blobs.uri_for(sha),
            content_type="text/plain",
            parser="text",
            parser_version="test",
            block_count=1,
            parsed_at=utc_now(),
        )
        producer.send(s.topic(topology.PARSED), key=str(ghost), value=codec.encode(parsed))
        self.poison.append(Poison("chunk", "parsed event of a missing blob", "MissingBlob"))
        producer.wait()
        producer.close()


# --- a supervised crew of real workers -------------------------------------------------


class Crew:
    """``ragstream worker`` processes kept at a desired count per stage, as a supervisor would.

    Deaths the test caused (SIGKILL, or SIGTERM when scaling down) are expected;
    any other exit is a crash, recorded with the end of its log.
    """

    def __init__(self, workers: Workers, seed: int = 0) -> None:
        self.workers = workers
        self.rng = random.Random(seed)
        self.desired = dict.fromkeys(STAGE_NAMES, 1)
        self.crashes: list[str] = []
        self.restarts = 0
        self._intended: set[int] = set()
        self._seen_dead: set[int] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self, **counts: int) -> None:
        self.desired.update(counts)
        with self._lock:
            for stage, n in self.desired.items():
                for _ in range(n):
                    self.workers.start(stage)
        self._thread.start()

    def alive(self, stage: str) -> list[subprocess.Popen[bytes]]:
        return self.workers.alive(stage)

    def kill(self, stage: str) -> bool:
        """SIGKILL one live worker of ``stage``, chosen at random; the supervisor restarts it.

        In a burst the previous victim may not be replaced yet: wait for its successor.
        """
        deadline = time.monotonic() + 10
        while True:
            with self._lock:
                live = self.alive(stage)
                if live:
                    proc = self.rng.choice(live)
                    self._intended.add(proc.pid)
                    proc.send_signal(signal.SIGKILL)
                    break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        proc.wait(timeout=60)
        return True

    def scale(self, stage: str, n: int) -> int:
        """Grow, or shrink by SIGTERM (each finishes its batch); returns how many came or went."""
        with self._lock:
            self.desired[stage] = n
            live = self.alive(stage)
            leaving = live[n:] if len(live) > n else []
            for proc in leaving:
                self._intended.add(proc.pid)
                proc.send_signal(signal.SIGTERM)
            for _ in range(n - len(live)):
                self.workers.start(stage)
        for proc in leaving:
            proc.wait(timeout=120)
        return abs(n - len(live))

    def _supervise(self) -> None:
        while not self._stop.wait(0.3):
            with self._lock:
                for stage, procs in self.workers.procs.items():
                    for proc in procs:
                        code = proc.poll()
                        if code is None or proc.pid in self._seen_dead:
                            continue
                        self._seen_dead.add(proc.pid)
                        if proc.pid not in self._intended:
                            self.crashes.append(f"{stage} pid {proc.pid} exited with {code}")
                    missing = self.desired[stage] - len(self.alive(stage))
                    for _ in range(max(missing, 0)):
                        self.workers.start(stage)
                        self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            self.workers.stop_all()


@contextmanager
def crew_of(settings: Settings, log_dir: Path, seed: int = 0) -> Iterator[Crew]:
    crew = Crew(Workers(settings, log_dir), seed)
    try:
        yield crew
    finally:
        crew.stop()


# --- waiting and accounting ------------------------------------------------------------


def poll(
    condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.3, what: str
) -> None:
    """Wait for ``condition``, tolerating services that are down meanwhile."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as exc:  # a fault may be in progress: the broker or database is away
            last = exc
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last})"
    )


def wait_for_progress(settings: Settings, workload: Workload, status: str, n: int) -> None:
    """Until ``n`` documents have reached ``status`` (or ended): the faults hit work in flight."""
    engine = make_engine(settings)

    def reached() -> bool:
        states = documents_progress(engine, workload.submitted).values()
        return sum(1 for s in states if s.terminal or s.reached(DocumentStatus(status))) >= n

    try:
        poll(reached, timeout_s=120, what=f"{n} documents {status}")
    finally:
        engine.dispose()


def _quiet(settings: Settings, workload: Workload, engine: Any) -> bool:
    states = documents_progress(engine, workload.submitted)
    if len(states) != len(workload.submitted) or not all(s.terminal for s in states.values()):
        return False
    return not any(stage_lag(settings).values())


def settle(settings: Settings, workload: Workload, crew: Crew, *, healed_at: float) -> float:
    """Wait until every document is terminal and every lag is 0; seconds since ``healed_at``."""
    engine = make_engine(settings)
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if _quiet(settings, workload, engine):
                    return max(time.monotonic() - healed_at, 0.0)
            except Exception as exc:
                last = exc
            time.sleep(0.5)
        states = documents_progress(engine, workload.submitted)
        pending = Counter(s.status for s in states.values() if not s.terminal)
        raise AssertionError(
            f"not settled after {SETTLE_TIMEOUT_S}s: pending {dict(pending)}, "
            f"{len(workload.submitted) - len(states)} missing, lag {stage_lag(settings)}, "
            f"last error {last}\n{crew.workers.logs()}"
        )
    finally:
        engine.dispose()


@dataclass
class Outcome:
    name: str
    documents: int
    good: int
    bad: int
    poison: int
    faults: int
    recovery_s: float
    lost: int = 0
    duplicates: int = 0
    chunks: int = 0
    expected_chunks: int = 0
    vectors: int = 0
    dlq_distinct: int = 0
    dlq_records: int = 0
    rewritten: int = 0
    extra: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def _recovery(self) -> str:
        if math.isinf(self.recovery_s):
            return f"never (not settled within {SETTLE_TIMEOUT_S}s)"
        return f"{self.recovery_s:.1f}s"

    def line(self) -> str:
        return (
            f"chaos {self.name}: documents={self.documents} ({self.good} good, {self.bad} bad"
            f"{f', {self.poison} poison messages' if self.poison else ''}) faults={self.faults} "
            f"lost={self.lost} duplicates={self.duplicates} chunks={self.chunks}/"
            f"{self.expected_chunks} vectors={self.vectors} dlq={self.dlq_distinct} "
            f"({self.dlq_records} records) rewritten_rows={self.rewritten} "
            f"recovery={self._recovery}{' ' + self.extra if self.extra else ''}"
        )


def account(
    settings: Settings, workload: Workload, *, name: str, faults: int, recovery_s: float
) -> Outcome:
    """The exact accounting; every discrepancy is a problem in the outcome."""
    out = Outcome(
        name=name,
        documents=len(workload.items),
        good=workload.good,
        bad=workload.bad,
        poison=len(workload.poison),
        faults=faults,
        recovery_s=recovery_s,
    )
    chunks_by_name = workload.chunks()
    engine = make_engine(settings)
    try:
        states = documents_progress(engine, workload.submitted)
        with engine.connect() as conn:
            classes = dict(
                conn.execute(
                    select(Document.id, Document.error_class).where(
                        Document.id.in_([*workload.submitted, *workload.refused_ids])
                    )
                ).all()
            )
            c_rows, c_ids, c_natural, c_rewritten = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT id),"
                    " count(DISTINCT (document_id, chunk_index)),"
                    " count(*) FILTER (WHERE updated_at > created_at) FROM document_chunk_buffer"
                )
            ).one()
            v_rows, v_ids, v_natural, v_rewritten = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT id), count(DISTINCT (chunk_id, model)),"
                    " count(*) FILTER (WHERE updated_at > created_at) FROM document_vector_buffer"
                )
            ).one()
            orphans = conn.execute(
                text(
                    "SELECT count(*) FROM document_vector_buffer v LEFT JOIN document_chunk_buffer"
                    " c ON c.id = v.chunk_id WHERE c.id IS NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()

    for name_, refused_class in workload.refusals.items():
        if workload.refused.get(name_) != refused_class:
            out.problems.append(f"{name_}: must be refused with {refused_class}")
    if workload.refused_ids & set(classes):
        out.problems.append("a refused document has a row")
    for document_id, expected in workload.submitted.items():
        found = states.get(document_id)
        if found is None:
            out.lost += 1
            out.problems.append(f"{expected.name}: no document row")
            continue
        if expected.outcome == "complete":
            want = chunks_by_name[expected.name]
            if found.status != "complete" or found.chunks < want or found.vectors < want:
                out.lost += 1
                out.problems.append(
                    f"{expected.name}: {found.status} with {found.chunks}/{want} chunks, "
                    f"{found.vectors} vectors ({found.failed_stage}: {found.error})"
                )
            elif found.chunks > want or found.vectors > want:
                out.problems.append(
                    f"{expected.name}: {found.chunks} chunks, {found.vectors} vectors, not {want}"
                )
        elif (found.status, found.failed_stage, classes.get(document_id)) != (
            "failed",
            expected.failed_stage,
            expected.error_class,
        ):
            out.lost += 1
            out.problems.append(
                f"{expected.name}: {found.status} at {found.failed_stage} with "
                f"{classes.get(document_id)}, must fail at {expected.failed_stage} with "
                f"{expected.error_class}"
            )
        elif not found.error:
            out.problems.append(f"{expected.name}: failed without an error message")

    out.expected_chunks = sum(
        chunks_by_name[e.name] for e in workload.submitted.values() if e.outcome == "complete"
    )
    out.chunks, out.vectors = c_rows, v_rows
    out.rewritten = c_rewritten + v_rewritten
    out.duplicates = (
        (c_rows - c_natural) + (v_rows - v_natural) + (c_rows - c_ids) + (v_rows - v_ids)
    )
    if c_rows != out.expected_chunks or v_rows != out.expected_chunks:
        out.problems.append(
            f"{c_rows} chunk rows and {v_rows} vector rows, expected {out.expected_chunks} each"
        )
    if orphans:
        out.problems.append(f"{orphans} vectors without their chunk")

    _account_dlq(settings, workload, out, states)
    lag = stage_lag(settings)
    if any(lag.values()):
        out.problems.append(f"lag is not 0: {lag}")
    return out


def _account_dlq(settings: Settings, workload: Workload, out: Outcome, states: Any) -> None:
    origins: dict[str, dlq.DlqRecord] = {}
    for topic in dlq.dlq_topics(settings):
        for letter in dlq.read(settings, topic.topic):
            out.dlq_records += 1
            if not letter.origin_topic or letter.origin.count("?"):
                out.problems.append(f"{letter.id} lacks its origin headers")
            origins.setdefault(letter.origin, letter)
    out.dlq_distinct = len(origins)
    got = Counter((m.stage, m.error_class) for m in origins.values())
    want = Counter((p.stage, p.error_class) for p in workload.poison)
    want.update(
        (e.failed_stage, e.error_class)
        for e in workload.submitted.values()
        if e.outcome == "failed"
    )
    if got != want:
        out.problems.append(f"DLQ holds {dict(got)}, expected {dict(want)}")
    failed = {str(d) for d, e in workload.submitted.items() if e.outcome == "failed"}
    dead = {str(m.document_id) for m in origins.values() if m.document_id}
    if not failed <= dead:
        out.problems.append(f"failed documents missing from the DLQ: {sorted(failed - dead)}")


def finish(
    request: pytest.FixtureRequest,
    settings: Settings,
    workload: Workload,
    crew: Crew,
    *,
    name: str,
    faults: int,
    healed_at: float,
    crashes_allowed: bool = False,
    extra: Callable[[], str] | None = None,
) -> Outcome:
    """Settle, account, print the one summary line, and fail on any discrepancy.

    A run that never settles is accounted too, so its line says what was lost.
    """
    unsettled = None
    try:
        recovery = settle(settings, workload, crew, healed_at=healed_at)
    except AssertionError as exc:
        recovery, unsettled = math.inf, str(exc)
    outcome = account(settings, workload, name=name, faults=faults, recovery_s=recovery)
    outcome.extra = extra() if extra is not None else ""
    if unsettled is not None:
        outcome.problems.insert(0, unsettled)
    if crew.crashes and not crashes_allowed:
        outcome.problems.append(f"workers crashed: {crew.crashes}")
    report(request, outcome.line())
    assert outcome.lost == 0 and outcome.duplicates == 0 and not outcome.problems, (
        "\n".join(outcome.problems) + "\n" + crew.workers.logs()
    )
    return outcome


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture, so the figures show in every run."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + line, flush=True)
    else:
        print(line)


def document_id_of(settings: Settings, data: bytes) -> uuid.UUID:
    return ids.document_id(settings.tenant, blobs.sha256_of(data))


_CHECKSUMS = {  # table: (key, the columns that carry content: not times, not lineage offsets)
    "documents": (
        "id",
        "id::text || status || coalesce(chunk_count, -1) || coalesce(failed_stage, '')"
        " || coalesce(error_class, '') || coalesce(error_message, '') || current_job_id::text",
    ),
    "jobs": ("id", "id::text || document_id::text || kind || status"),
    "blobs": ("sha256", "sha256 || size_bytes"),
    "document_parse_buffer": (
        "id",
        "id::text || job_id::text || text_blob_sha256 || content_type || parser_version"
        " || block_count",
    ),
    "document_chunk_buffer": (
        "id",
        "id::text || document_id::text || chunk_index || md5(text) || token_count"
        " || chunker_config_hash",
    ),
    "document_vector_buffer": ("id", "id::text || chunk_id::text || model || md5(embedding::text)"),
}


def content_checksum(settings: Settings) -> dict[str, str]:
    """An md5 per table of its rows' content, in key order."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return {
                table: str(
                    conn.execute(
                        text(f"SELECT md5(string_agg({row}, ',' ORDER BY {key})) FROM {table}")
                    ).scalar_one()
                )
                for table, (key, row) in _CHECKSUMS.items()
            }
    finally:
        engine.dispose()
