"""Partitions taken away during a batch and given back are read again; a stuck client is rebuilt."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import pytest
from confluent_kafka import Consumer, TopicPartition

from ragstream import topology
from ragstream.consumers.base import Incoming, StageContext, StageOutput
from ragstream.consumers.parse import ParseStage
from ragstream.consumers.runner import StageRunner
from ragstream.db.engine import make_engine
from ragstream.kafka import consumer_config
from ragstream.schemas.codec import make_codec
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare

pytestmark = pytest.mark.integration


class _HeldParse(ParseStage):
    """Parses, but holds its first batch until released (a slow batch, partitions paused)."""

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


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_partitions_revoked_during_a_paused_batch_are_read_after_they_return(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"session_timeout_s": 6})
    submitter = prepare(settings)
    files = corpus.mixed(13, seed=61)
    submitter.submit(files[0][1], filename=files[0][0])
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    stage = _HeldParse()
    runner = StageRunner(stage, settings, engine, ctx)
    worker = threading.Thread(target=runner.run, daemon=True)
    worker.start()
    other: Consumer | None = None
    try:
        _wait(stage.entered.is_set, 30, "the first batch to start")
        # A second member joins while the batch is held: some partitions move to it.
        group = settings.topic_prefix + topology.STAGES["parse"].group_id
        other = Consumer(consumer_config(settings, group))
        other.subscribe([settings.topic(topology.STAGES["parse"].input_topic)])
        deadline = time.monotonic() + 40
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(0.2)
        moved = {p.partition for p in other.assignment()}
        assert moved, "the second member never received a partition"
        stage.release.set()
        _wait(lambda: runner.stats.batches >= 1, 30, "the held batch to finish")
        # The second member leaves: its partitions go back to the runner.
        other.close()
        other = None
        _wait(
            lambda: len(runner._assigned) == settings.partitions,
            40,
            "every partition to return to the runner",
        )
        for name, data in files[1:]:
            submitter.submit(data, filename=name)
        # Every partition is read again, those that moved away and back included.
        _wait(lambda: runner.stats.processed >= len(files), 40, "all documents to be parsed")
        assert runner.stats.processed == len(files)
    finally:
        stage.release.set()
        if other is not None:
            other.close()
        runner.stop()
        worker.join(30)


class _StopsFetching(StageRunner):
    """A runner whose first consumer keeps its partitions but never fetches (a stuck client)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.stuck_once = False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        super()._on_assign(consumer, partitions)
        if not self.stuck_once and partitions:
            self.stuck_once = True
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)


def test_a_consumer_that_stops_fetching_is_rebuilt(settings: Settings) -> None:
    settings = settings.model_copy(update={"consumer_stall_s": 3.0})
    submitter = prepare(settings)
    files = corpus.mixed(4, seed=62)
    for name, data in files:
        submitter.submit(data, filename=name)
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    runner = _StopsFetching(ParseStage(), settings, engine, ctx)
    stats = runner.run(max_messages=len(files), idle_timeout_s=30)
    assert runner.stuck_once
    assert stats.rebuilt_consumers == 1
    assert stats.processed == len(files)
