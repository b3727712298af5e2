"""The stage runner on real topics: commit order, DLQ, state changes, each stage on its own."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, func, select

from ragstream import topology
from ragstream.consumers.base import Incoming, StageContext, StageOutput
from ragstream.consumers.chunk import ChunkStage
from ragstream.consumers.parse import ParseStage
from ragstream.consumers.runner import StageRunner
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.errors import DependencyUnavailable
from ragstream.kafka import consumer_config
from ragstream.monitor import store
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import DocumentUploaded
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, read_topic

pytestmark = pytest.mark.integration


def _committed(settings: Settings, stage: str) -> int:
    spec = topology.STAGES[stage]
    topic = settings.topic(spec.input_topic)
    consumer = Consumer(consumer_config(settings, settings.topic_prefix + spec.group_id))
    parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.close()
    return sum(tp.offset for tp in committed if tp.offset >= 0)


def test_each_stage_moves_documents_and_states(settings: Settings) -> None:
    submitter = prepare(settings)
    files = corpus.mixed(5, seed=7)
    ids = [submitter.submit(data, filename=name).document_id for name, data in files]
    engine = make_engine(settings)

    def statuses() -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(select(Document.status)).scalars())

    assert statuses() == {"uploaded"}
    assert build_runner(settings, "parse").run(max_messages=5, idle_timeout_s=10).processed == 5
    assert statuses() == {"parsed"}
    assert build_runner(settings, "chunk").run(max_messages=5, idle_timeout_s=10).processed == 5
    assert statuses() == {"chunked"}
    with engine.connect() as conn:
        chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
    assert (
        build_runner(settings, "embed").run(max_messages=chunks, idle_timeout_s=10).processed
        == chunks
    )
    assert statuses() == {"embedding"}
    assert (
        build_runner(settings, "finalize").run(max_messages=chunks, idle_timeout_s=10).processed
        == chunks
    )
    assert statuses() == {"complete"}
    with engine.connect() as conn:
        vectors = conn.execute(select(func.count()).select_from(VectorBuffer)).scalar_one()
        rows = conn.execute(select(Document)).all()
    assert vectors == chunks
    for doc in rows:
        # Every step is stamped, in order, by the database clock.
        steps = [
            doc.uploaded_at,
            doc.parsing_started_at,
            doc.parsed_at,
            doc.chunking_started_at,
            doc.chunked_at,
            doc.embedding_started_at,
            doc.completed_at,
        ]
        assert all(s is not None for s in steps)
        assert steps == sorted(steps)  # type: ignore[type-var]
        assert doc.uploaded_at.utcoffset() is not None
    assert {d.id for d in rows} == set(ids)
    # offsets were committed for exactly what was processed
    assert _committed(settings, "parse") == 5


class _Crashing(ParseStage):
    """A parse stage whose batch dies with an error of the process, not of a message (an OOM).

    (A bug of stage code, any other exception, ends in the DLQ after bounded
    attempts: test_a_wrong_event_or_a_bug_in_stage_code_is_dead_lettered_not_crash_looped.)
    """

    name: ClassVar[str] = "parse"

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        raise MemoryError("boom")


def test_failed_batch_leaves_committed_offset_unchanged(settings: Settings) -> None:
    submitter = prepare(settings)
    for name, data in corpus.mixed(3, seed=8):
        submitter.submit(data, filename=name)
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    with pytest.raises(MemoryError, match="boom"):
        StageRunner(_Crashing(), settings, engine, ctx).run(idle_timeout_s=10)
    assert _committed(settings, "parse") == 0
    # The next worker gets every message again and finishes them.
    assert build_runner(settings, "parse").run(max_messages=3, idle_timeout_s=10).processed == 3
    assert _committed(settings, "parse") == 3


def test_poison_goes_to_dlq_and_the_partition_keeps_flowing(settings: Settings) -> None:
    submitter = prepare(settings)
    producer = EventProducer(settings)
    topic = settings.topic(topology.UPLOADED)
    # All on one partition (same key), poison first: the good one behind it must still pass.
    good_name, good_data = corpus.mixed(1, seed=9)[0]
    producer.send(topic, key="same", value=b"not avro at all")
    producer.send(topic, key="same", value=b"\xc3\x01" + b"\x00" * 8 + b"junk")
    producer.wait()
    good = submitter.submit(good_data, filename=good_name)
    bad = submitter.submit(
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n truncated", filename="broken.pdf"
    )

    stats = build_runner(settings, "parse").run(max_messages=4, idle_timeout_s=15)
    assert stats.processed == 1 and stats.failed == 3

    engine = make_engine(settings)
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Document)).all()}
    assert rows[good.document_id].status == "parsed"
    failed = rows[bad.document_id]
    assert failed.status == "failed" and failed.failed_stage == "parse"
    assert failed.error_message.startswith("parse: ") and "PDF" in failed.error_message
    assert failed.failed_at is not None

    dlq = read_topic(settings, topology.dlq(topology.UPLOADED), expect=3)
    assert len(dlq) == 3
    for msg in dlq:
        headers = dict(msg.headers())
        assert headers["ragstream-dlq-origin-topic"] == topic.encode()
        assert int(headers["ragstream-dlq-origin-offset"]) >= 0
        assert headers["ragstream-dlq-stage"] == b"parse"
        assert headers["ragstream-dlq-error-class"]
        assert headers["ragstream-dlq-error-message"]
        assert headers["ragstream-attempt"] == b"1"
    classes = sorted(dict(m.headers())["ragstream-dlq-error-class"].decode() for m in dlq)
    assert classes.count("UndecodableEvent") == 2
    assert _committed(settings, "parse") == 4


class _BatchedChunk(ChunkStage):
    """The chunk stage taking several documents per batch, as other stages do."""

    name: ClassVar[str] = "chunk"
    batch_limit: ClassVar[int | None] = None


def test_a_row_the_database_refuses_fails_only_its_message(settings: Settings) -> None:
    """A parsed document whose text PostgreSQL cannot store (NUL) must not stop its batch."""
    import json

    from ragstream.db import blobs
    from ragstream.documents import Block, ParsedDocument

    submitter = prepare(settings)
    (good_name, good_data), (bad_name, bad_data) = corpus.mixed(2, seed=11)
    good = submitter.submit(good_data, filename=good_name)
    bad = submitter.submit(bad_data, filename=bad_name)
    assert build_runner(settings, "parse").run(max_messages=2, idle_timeout_s=10).processed == 2

    # Rewrite the bad document's parsed blob behind the pipeline's back.
    engine = make_engine(settings)
    hostile = ParsedDocument(
        blocks=(Block(text="text with a NUL \x00 inside"),),
        content_type="text/plain",
        parser="text",
        parser_version="test",
    )
    with engine.begin() as conn:
        from sqlalchemy import update

        from ragstream.db.models import Blob, ParseBuffer

        sha = conn.execute(
            select(ParseBuffer.text_blob_sha256).where(ParseBuffer.document_id == bad.document_id)
        ).scalar_one()
        payload = hostile.to_json()
        assert json.loads(payload)["blocks"][0]["text"].count("\x00") == 1
        conn.execute(update(Blob).where(Blob.sha256 == sha).values(content=payload))
        # keep the blob's address valid: the store checks content against its hash
        conn.execute(update(Blob).where(Blob.sha256 == sha).values(sha256=blobs.sha256_of(payload)))
        conn.execute(
            update(ParseBuffer)
            .where(ParseBuffer.document_id == bad.document_id)
            .values(text_blob_sha256=blobs.sha256_of(payload))
        )
    # The event still names the old hash: re-publish a parsed event for the new blob.
    from ragstream.schemas.events import DocumentParsed, utc_now

    producer = EventProducer(settings)
    event = DocumentParsed(
        document_id=str(bad.document_id),
        job_id=str(bad.job_id),
        tenant="default",
        text_blob_sha256=blobs.sha256_of(payload),
        text_blob_uri=blobs.uri_for(blobs.sha256_of(payload)),
        content_type="text/plain",
        parser="text",
        parser_version="test",
        block_count=1,
        parsed_at=utc_now(),
    )
    producer.send(
        settings.topic(topology.PARSED), str(bad.document_id), make_codec(settings).encode(event)
    )
    producer.wait()

    # All three in one batch: the refused row must not take the others with it.
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    stats = StageRunner(_BatchedChunk(), settings, engine, ctx).run(
        max_messages=3, idle_timeout_s=10
    )
    with engine.connect() as conn:
        status = dict(conn.execute(select(Document.id, Document.status)).all())
        error = conn.execute(
            select(Document.error_class).where(Document.id == bad.document_id)
        ).scalar_one()
    assert status[good.document_id] == "chunked"
    assert status[bad.document_id] == "failed"
    assert error in ("RejectedByDatabase", "MissingBlob")
    assert stats.failed >= 1


def test_tombstones_are_skipped_not_dead_lettered(settings: Settings) -> None:
    submitter = prepare(settings)
    producer = EventProducer(settings)
    producer.send(settings.topic(topology.UPLOADED), key="deleted-doc", value=None)
    producer.wait()
    name, data = corpus.mixed(1, seed=12)[0]
    good = submitter.submit(data, filename=name)
    stats = build_runner(settings, "parse").run(max_messages=2, idle_timeout_s=10)
    assert (stats.processed, stats.failed) == (2, 0)
    assert _committed(settings, "parse") == 2
    assert read_topic(settings, topology.dlq(topology.UPLOADED), expect=1, timeout_s=5) == []
    engine = make_engine(settings)
    with engine.connect() as conn:
        status = conn.execute(
            select(Document.status).where(Document.id == good.document_id)
        ).scalar_one()
    assert status == "parsed"


class _Stubborn(ParseStage):
    """Fails with a retryable error whenever one cursed document is in the batch."""

    name: ClassVar[str] = "parse"
    batch_limit: ClassVar[int | None] = None  # batches of several documents
    cursed: ClassVar[set[object]] = set()

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        if any(m.document_id in self.cursed for m in batch):
            raise DependencyUnavailable("connection reset while writing this one")
        return super().process(batch, ctx)


def test_a_retryable_error_that_persists_while_dependencies_answer_is_dead_lettered(
    settings: Settings,
) -> None:
    settings = settings.model_copy(
        update={"max_batch_attempts": 3, "retry_backoff_initial_s": 0.05}
    )
    submitter = prepare(settings)
    files = corpus.mixed(4, seed=12)
    ids = [submitter.submit(d, filename=n).document_id for n, d in files]
    _Stubborn.cursed = {ids[1]}
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    stats = StageRunner(_Stubborn(), settings, engine, ctx).run(max_messages=4, idle_timeout_s=15)
    assert (stats.processed, stats.failed) == (3, 1)
    assert stats.retries >= 2  # retried as a dependency failure first
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Document)).all()}
    assert {rows[i].status for i in ids if i != ids[1]} == {"parsed"}
    stuck = rows[ids[1]]
    assert (stuck.status, stuck.error_class) == ("failed", "RetriesExhausted")
    assert "DependencyUnavailable" in stuck.error_message
    (dead,) = read_topic(settings, topology.dlq(topology.UPLOADED), expect=1)
    assert dict(dead.headers())["ragstream-dlq-error-class"] == b"RetriesExhausted"
    assert _committed(settings, "parse") == 4


class _Slow(ParseStage):
    """A parse stage whose first batch outlasts the pause threshold, noting what was carried."""

    name: ClassVar[str] = "parse"
    batch_limit: ClassVar[int | None] = None  # batches of several documents
    runner: ClassVar[StageRunner | None] = None
    meanwhile: ClassVar[Callable[[], None]] = staticmethod(lambda: None)
    carried_during_first: ClassVar[int] = -1
    batches: ClassVar[list[int]] = []

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        self.batches.append(len(batch))
        if len(self.batches) == 1:
            assert self.runner is not None
            self.meanwhile()  # more documents arrive while this batch runs
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and len(self.runner._prefetched) < 2:
                time.sleep(0.05)
            time.sleep(0.5)  # a carry that would overfill has time to
            _Slow.carried_during_first = len(self.runner._prefetched)
        return super().process(batch, ctx)


def test_a_slow_batch_takes_the_next_one_in_hand_while_it_runs(settings: Settings) -> None:
    """The next batch is already read when a slow one ends: no wait for the fetcher."""
    settings = settings.model_copy(update={"max_batch_size": 2, "partitions": 1})
    submitter = prepare(settings)
    files = corpus.mixed(6, seed=14)
    for name, data in files[:2]:
        submitter.submit(data, filename=name)

    def submit_the_rest() -> None:
        for name, data in files[2:]:
            submitter.submit(data, filename=name)

    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    runner = StageRunner(_Slow(), settings, engine, ctx)
    _Slow.runner, _Slow.batches, _Slow.meanwhile = runner, [], staticmethod(submit_the_rest)
    stats = runner.run(max_messages=6, idle_timeout_s=10)
    # While the first batch ran, the next one was read and held: one batch's worth,
    # no more (the partitions were paused then).
    assert _Slow.carried_during_first == 2
    assert stats.processed == 6 and _Slow.batches == [2, 2, 2]
    with engine.connect() as conn:
        statuses = conn.execute(select(Document.status)).scalars().all()
    assert sorted(statuses) == ["parsed"] * 6
    assert _committed(settings, "parse") == 6


class _Watching(ChunkStage):
    """The chunk stage, noting which documents were already chunked when each batch began."""

    name: ClassVar[str] = "chunk"
    engine: ClassVar[Engine | None] = None
    seen: ClassVar[list[tuple[int, int]]] = []

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        assert self.engine is not None
        with self.engine.connect() as conn:
            done = conn.execute(
                select(func.count()).select_from(Document).where(Document.status == "chunked")
            ).scalar_one()
        self.seen.append((len(batch), done))
        return super().process(batch, ctx)


def test_a_document_is_chunked_and_passed_on_before_the_next_is_taken(
    settings: Settings,
) -> None:
    """One document's chunks reach the embed stage without waiting for the others."""
    settings = settings.model_copy(update={"partitions": 1})
    submitter = prepare(settings)
    for name, data in corpus.mixed(3, seed=15):
        submitter.submit(data, filename=name)
    assert build_runner(settings, "parse").run(max_messages=3, idle_timeout_s=10).processed == 3
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    _Watching.engine, _Watching.seen = engine, []
    stats = StageRunner(_Watching(), settings, engine, ctx).run(max_messages=3, idle_timeout_s=10)
    assert stats.processed == 3
    # One document per batch, each begun after the ones before were committed.
    assert _Watching.seen == [(1, 0), (1, 1), (1, 2)]


class _StopsWhileSplit(ParseStage):
    """Fails a batch holding one cursed document; asks the runner to stop while it backs off."""

    name: ClassVar[str] = "parse"
    batch_limit: ClassVar[int | None] = None  # batches of several documents
    cursed: ClassVar[set[object]] = set()
    runner: ClassVar[StageRunner | None] = None
    batches: ClassVar[list[list[object]]] = []

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        self.batches.append([m.document_id for m in batch])
        if any(m.document_id in self.cursed for m in batch):
            if len(batch) == 1:  # the cursed one alone: SIGTERM arrives during its backoff
                assert self.runner is not None
                self.runner.stop()
            raise DependencyUnavailable("connection reset while writing this one")
        return super().process(batch, ctx)


def test_a_stop_during_a_split_batch_stores_nothing_past_the_unfinished_message(
    settings: Settings,
) -> None:
    """Issue 14.1: the messages behind one abandoned on a stop are not taken, nor committed."""
    settings = settings.model_copy(
        update={
            "partitions": 1,
            "max_batch_attempts": 2,
            "retry_backoff_initial_s": 0.05,
            "max_batch_wait_s": 1.0,  # the four documents form one batch
        }
    )
    submitter = prepare(settings)
    files = corpus.mixed(4, seed=16)
    ids = [submitter.submit(d, filename=n).document_id for n, d in files]
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    runner = StageRunner(_StopsWhileSplit(), settings, engine, ctx)
    _StopsWhileSplit.cursed, _StopsWhileSplit.runner, _StopsWhileSplit.batches = (
        {ids[1]},
        runner,
        [],
    )
    runner.run(idle_timeout_s=15)
    # The batch was split (so messages behind the cursed one were pending), then stopped.
    assert _StopsWhileSplit.batches[0] == ids
    assert [ids[1]] in _StopsWhileSplit.batches
    # Only the document before the cursed one is done and committed; nothing was dead-lettered.
    assert _committed(settings, "parse") == 1
    with engine.connect() as conn:
        status = dict(conn.execute(select(Document.id, Document.status)).all())
    assert status[ids[0]] == "parsed"
    assert all(status[i] != "parsed" for i in ids[1:])
    assert read_topic(settings, topology.dlq(topology.UPLOADED), expect=1, timeout_s=3) == []
    # The next worker takes up the unfinished message and everything behind it.
    _StopsWhileSplit.cursed = set()
    again = StageRunner(_StopsWhileSplit(), settings, engine, ctx).run(
        max_messages=3, idle_timeout_s=15
    )
    assert (again.processed, again.failed) == (3, 0)
    with engine.connect() as conn:
        assert set(conn.execute(select(Document.status)).scalars()) == {"parsed"}
    assert _committed(settings, "parse") == 4


class _Held(ParseStage):
    """Parses, but holds its first batch until released (partitions paused meanwhile)."""

    name: ClassVar[str] = "parse"

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(60)
        return super().process(batch, ctx)


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_partitions_paused_during_a_batch_are_read_again_after_they_come_back(
    settings: Settings,
) -> None:
    """Issue 14.2: a partition paused (prefetch full), revoked and assigned back must not starve."""
    settings = settings.model_copy(update={"session_timeout_s": 6, "consumer_stall_s": 600.0})
    submitter = prepare(settings)
    files = corpus.mixed(18, seed=63)
    for name, data in files[:6]:  # more than a batch and its prefetch: the partitions get paused
        submitter.submit(data, filename=name)
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    stage = _Held()
    runner = StageRunner(stage, settings, engine, ctx)
    worker = threading.Thread(target=runner.run, daemon=True)
    worker.start()
    group = settings.topic_prefix + topology.STAGES["parse"].group_id
    topic = settings.topic(topology.UPLOADED)
    other: Consumer | None = None
    try:
        _wait_for(stage.entered.is_set, 30, "the first batch to start")
        time.sleep(3)  # past PAUSE_AFTER_S: the next batch is read ahead, the partitions paused
        other = Consumer(consumer_config(settings, group))
        other.subscribe([topic])
        deadline = time.monotonic() + 40
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(0.2)
        moved = {p.partition for p in other.assignment()}
        assert moved, "the second member never received a partition"
        stage.release.set()
        _wait_for(lambda: runner.stats.batches >= 1, 30, "the held batch to finish")
        other.close()
        other = None
        _wait_for(
            lambda: len(runner._assigned) == settings.partitions, 40, "the partitions to return"
        )

        def ends() -> dict[int, int]:
            reader = Consumer(consumer_config(settings, f"ends-{time.monotonic_ns()}"))
            try:
                return {
                    p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in moved
                }
            finally:
                reader.close()

        before = ends()
        for name, data in files[6:]:
            submitter.submit(data, filename=name)
        assert any(ends()[p] > before[p] for p in moved), "no new document on a moved partition"
        _wait_for(lambda: runner.stats.processed >= len(files), 40, "all documents to be parsed")
        assert runner.stats.processed == len(files)
    finally:
        stage.release.set()
        if other is not None:
            other.close()
        runner.stop()
        worker.join(30)
    assert _committed(settings, "parse") == len(files)


class _Buggy(ParseStage):
    """A parse stage with a bug that one document triggers (not a RagstreamError)."""

    name: ClassVar[str] = "parse"
    batch_limit: ClassVar[int | None] = None
    cursed: ClassVar[set[object]] = set()

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        if any(m.document_id in self.cursed for m in batch):
            raise KeyError("a bug this document triggers")
        return super().process(batch, ctx)


def test_a_wrong_event_or_a_bug_in_stage_code_is_dead_lettered_not_crash_looped(
    settings: Settings,
) -> None:
    """Issue 14.3: an Avro-valid event with a wrong id, and a non-RagstreamError, end in the DLQ."""
    import dataclasses

    settings = settings.model_copy(
        update={
            "partitions": 1,
            "max_batch_attempts": 2,
            "retry_backoff_initial_s": 0.05,
            "max_batch_wait_s": 0.5,
        }
    )
    submitter = prepare(settings)
    files = corpus.mixed(3, seed=17)
    topic = settings.topic(topology.UPLOADED)
    codec = make_codec(settings)
    first = submitter.submit(files[0][1], filename=files[0][0]).document_id
    (record,) = read_topic(settings, topology.UPLOADED, expect=1)
    wrong = dataclasses.replace(codec.decode(record.value(), DocumentUploaded), document_id="x-1")
    producer = EventProducer(settings)
    producer.send(topic, key="x-1", value=codec.encode(wrong))
    producer.wait()
    buggy = submitter.submit(files[1][1], filename=files[1][0]).document_id
    last = submitter.submit(files[2][1], filename=files[2][0]).document_id
    _Buggy.cursed = {buggy}
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=codec)
    stats = StageRunner(_Buggy(), settings, engine, ctx).run(max_messages=4, idle_timeout_s=15)
    assert (stats.processed, stats.failed) == (2, 2)
    assert _committed(settings, "parse") == 4
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Document)).all()}
    assert rows[first].status == rows[last].status == "parsed"
    assert (rows[buggy].status, rows[buggy].error_class) == ("failed", "UnexpectedError")
    assert "KeyError" in rows[buggy].error_message
    dlq = read_topic(settings, topology.dlq(topology.UPLOADED), expect=2)
    by_offset = {int(dict(m.headers())["ragstream-dlq-origin-offset"]): m for m in dlq}
    assert sorted(by_offset) == [1, 2]
    for m in dlq:
        headers = dict(m.headers())
        assert headers["ragstream-dlq-origin-topic"] == topic.encode()
        assert headers["ragstream-dlq-origin-partition"] == b"0"
        assert headers["ragstream-dlq-stage"] == b"parse"
    assert dict(by_offset[1].headers())["ragstream-dlq-error-class"] == b"InvalidEvent"
    assert by_offset[1].value() == codec.encode(wrong)
    assert dict(by_offset[2].headers())["ragstream-dlq-error-class"] == b"UnexpectedError"


class _OutageEndpoint:
    """An OpenAI-compatible embeddings endpoint that answers 503 + Retry-After until healed."""

    def __init__(self, retry_after_s: int) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from ragstream.embedding import HashEmbedder

        self.down = True
        self.calls: list[tuple[float, bool, list[str]]] = []  # (when, answered 503, texts)
        embedder = HashEmbedder(384)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                texts = [str(t) for t in body["input"]]
                endpoint.calls.append((time.monotonic(), endpoint.down, texts))
                if endpoint.down:
                    answer, status = b'{"error": "overloaded"}', 503
                else:
                    vectors = embedder.embed(texts)
                    data = [
                        {"object": "embedding", "index": i, "embedding": v}
                        for i, v in enumerate(vectors)
                    ]
                    answer, status = json.dumps({"object": "list", "data": data}).encode(), 200
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", str(retry_after_s))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_an_embedder_outage_is_waited_out_without_failing_documents(settings: Settings) -> None:
    """Issue 14.4: 503 + Retry-After from the embedder backs off (as asked) and fails nothing."""
    endpoint = _OutageEndpoint(retry_after_s=1)
    try:
        settings = settings.model_copy(
            update={
                "embedder": "openai",
                "openai_base_url": endpoint.base_url,
                "openai_model": "outage-test",
                "openai_timeout_s": 10.0,
                "max_batch_attempts": 2,
                "retry_backoff_initial_s": 0.05,
                "retry_backoff_max_s": 0.2,
            }
        )
        submitter = prepare(settings)
        ids = [submitter.submit(d, filename=n).document_id for n, d in corpus.mixed(2, seed=18)]
        assert build_runner(settings, "parse").run(max_messages=2, idle_timeout_s=10).processed == 2
        assert build_runner(settings, "chunk").run(max_messages=2, idle_timeout_s=10).processed == 2
        engine = make_engine(settings)
        with engine.connect() as conn:
            chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
        runner = build_runner(settings, "embed")
        worker = threading.Thread(
            target=lambda: runner.run(max_messages=chunks, idle_timeout_s=30), daemon=True
        )
        worker.start()
        _wait_for(
            lambda: len(endpoint.calls) >= 4, 30, "the embedder to be asked during the outage"
        )
        time.sleep(5)  # well past max_batch_attempts: nothing may fail meanwhile
        with engine.connect() as conn:
            assert "failed" not in set(conn.execute(select(Document.status)).scalars())
            (alert,) = [a for a in store.list_alerts(conn) if a["kind"] == "dependency_down"]
        assert alert["stage"] == "embed" and alert["state"] == "open", alert
        endpoint.down = False
        worker.join(60)
        assert not worker.is_alive()
        with engine.connect() as conn:
            (closed,) = [
                a
                for a in store.list_alerts(conn, include_resolved_s=3600)
                if a["kind"] == "dependency_down"
            ]
        assert closed["state"] == "resolved", closed
        stats = runner.stats
        assert (stats.processed, stats.failed) == (chunks, 0)
        assert stats.retries >= 3
        with engine.connect() as conn:
            assert set(conn.execute(select(Document.status)).scalars()) == {"embedding"}
            vectors = conn.execute(select(func.count()).select_from(VectorBuffer)).scalar_one()
        assert vectors == chunks and len(ids) == 2
        assert read_topic(settings, topology.dlq(topology.CHUNKED), expect=1, timeout_s=3) == []
        # Retry-After was honoured: the batch was not tried again sooner than asked.
        probe = ["ragstream dependency probe"]  # the runner's own question: is it back?
        tries = [when for when, down, texts in endpoint.calls if down and texts != probe]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        assert gaps and min(gaps) >= 0.9
    finally:
        endpoint.close()
