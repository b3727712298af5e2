"""Replicated Kafka, as users run it: three brokers, replication factor 3, two in sync.

The devstack's cluster (a KRaft controller and three brokers, each its own JVM,
in a data dir of its own) carries the pipeline's topics, the internal ones
replicated too. Real workers ingest documents; the leader of the busiest
partition is SIGKILLed mid-run, then a second broker. While one broker is left
no write may be acknowledged: the stage topics' high watermarks stand still
(the workers and uploads block), the pipeline's own producer (acks=all,
idempotent) gets no successful delivery report, and a producer that does not
retry is refused with NOT_ENOUGH_REPLICAS. Both brokers come back; the
accounting must show nothing lost and nothing twice.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

import ragstream
from ragstream import topology
from ragstream.devstack import Devstack, KafkaCluster, LocalKafka, resolve_addresses, with_brokers
from ragstream.kafka import consumer_config, create_topics, producer_config
from ragstream.settings import Settings
from tests import corpus
from tests.chaos.harness import (
    Workload,
    chaos_settings,
    crew_of,
    finish,
    poll,
    wait_for_progress,
)
from tests.chaos.hostile import Hostile, truncated_pdf
from tests.pipeline import prepare

PROBE = "replication.probe"


# --- configuration: no cluster needed ---------------------------------------------------


def test_replication_settings_follow_the_broker_count() -> None:
    one = Settings(kafka_bootstrap="x:1")
    assert (one.replication_factor, one.min_insync_replicas) == (1, 1)
    three = with_brokers(one, 3)
    assert (three.devstack_brokers, three.replication_factor, three.min_insync_replicas) == (
        3,
        3,
        2,
    )
    assert with_brokers(three, 1).replication_factor == 1  # derived, so it follows back
    explicit = Settings(devstack_brokers=3, replication_factor=2)
    assert (explicit.replication_factor, explicit.min_insync_replicas) == (2, 1)
    with pytest.raises(ValueError, match="min_insync_replicas"):
        Settings(replication_factor=1, min_insync_replicas=2)


def test_later_commands_find_the_devstack_broker_count(tmp_path: Path) -> None:
    """`ragstream up --brokers 3` records the count; commands without it follow it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    state = {"kafka_bootstrap": "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "database_url": "pg://"}
    (data_dir / "devstack.json").write_text(json.dumps({**state, "kafka_brokers": 3}))
    plain = Settings(data_dir=data_dir)
    resolved = resolve_addresses(plain)
    assert (resolved.devstack_brokers, resolved.replication_factor) == (3, 3)
    assert resolved.min_insync_replicas == 2 and resolved.bootstrap == state["kafka_bootstrap"]
    assert isinstance(Devstack(plain).kafka, KafkaCluster)
    assert isinstance(Devstack(with_brokers(plain, 1)).kafka, LocalKafka)  # named: it wins
    (data_dir / "devstack.json").write_text(json.dumps(state))  # written before the option
    assert resolve_addresses(plain).replication_factor == 1


def test_every_producer_writes_with_acks_all_and_idempotence() -> None:
    config = producer_config(Settings(kafka_bootstrap="x:1"))
    assert config["acks"] == "all" and config["enable.idempotence"] is True
    # Every producer of the package is built from that config, and none overrides either.
    package = Path(ragstream.__file__).parent
    for path in package.rglob("*.py"):
        source = path.read_text()
        for match in re.finditer(r"\bProducer\(", source):
            call = source[match.start() : match.start() + 40]
            assert call.startswith("Producer(producer_config("), f"{path}: {call}"
        if path.name != "kafka.py":
            assert not re.search(r"[\"'](acks|enable\.idempotence|retries)[\"']", source), path


# --- the cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    """Its own data dir (outside pytest's temp root) and free ports: no clash with others."""
    data_dir = Path(tempfile.mkdtemp(prefix="ragstream-cluster-test-"))
    found = KafkaCluster(data_dir, Settings().cache_dir, brokers=3)
    try:
        found.start()
        yield found
    finally:
        found.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def replicated(cluster: KafkaCluster) -> KafkaCluster:
    """All three brokers up and every partition in sync (after a previous test's kills)."""
    cluster.start()
    cluster.wait_in_sync()
    return cluster


def _admin(s: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": s.bootstrap, "log_level": 0})


def _topics(s: Settings) -> list[str]:
    return [s.topic(t) for t in topology.all_topics()]


def watermarks(s: Settings) -> dict[tuple[str, int], int | None]:
    """The high watermark (what is acknowledged) of every partition of the test's topics;
    None where the leader cannot tell yet."""
    consumer = Consumer(consumer_config(s, f"{s.topic_prefix}watermarks"))
    try:
        metadata = consumer.list_topics(timeout=10)
        found = {}
        for name in _topics(s):
            for p in metadata.topics[name].partitions:
                found[(name, p)] = _high(consumer, TopicPartition(name, p))
        return found
    finally:
        consumer.close()


def _high(consumer: Consumer, tp: TopicPartition) -> int | None:
    """A new leader answers OFFSET_NOT_AVAILABLE until its high watermark has reached the
    start of its epoch, which takes its followers (and, below min.insync.replicas, forever)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=5)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.3)


def busiest(s: Settings, leaders_among: set[int]) -> tuple[str, int, int]:
    """The stage-topic partition with the most records whose leader is one of
    ``leaders_among``: (topic, partition, leader)."""
    marks = watermarks(s)
    metadata = _admin(s).list_topics(timeout=10)
    candidates = [
        (marks[(name, p)] or -1, name, p, metadata.topics[name].partitions[p].leader)
        for name in (s.topic(t) for t in topology.STAGE_TOPICS)
        for p in metadata.topics[name].partitions
        if metadata.topics[name].partitions[p].leader in leaders_among
    ]
    _, name, p, leader = max(candidates)
    return name, p, leader


def in_sync_sets(s: Settings, names: list[str]) -> dict[str, set[int]]:
    metadata = _admin(s).list_topics(timeout=10)
    return {
        f"{name}/{p.id}": set(p.isrs)
        for name in names
        for p in metadata.topics[name].partitions.values()
    }


def probe_writes(s: Settings, **overrides: Any) -> list[str]:
    """One record to every partition of the probe topic; each delivery report's outcome
    (``ok`` or the error's name)."""
    name = s.topic(PROBE)
    producer = Producer(producer_config(s, **{"delivery.timeout.ms": 8000, **overrides}))
    outcomes: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        outcomes.append("ok" if err is None else err.name())

    for p in range(s.partitions):
        producer.produce(name, value=b"probe", partition=p, on_delivery=on_delivery)
    producer.flush(30)
    return outcomes


def check_topic_replication(s: Settings) -> None:
    """Every topic of the test: 3 replicas, min.insync.replicas=2."""
    admin = _admin(s)
    names = [*_topics(s), s.topic(PROBE)]
    # One snapshot that holds them all: each call may ask another broker, and a new topic
    # reaches the brokers' metadata one after the other.
    seen: list[Any] = []

    def complete() -> bool:
        seen[:] = [admin.list_topics(timeout=10)]
        return set(names) <= set(seen[0].topics)

    poll(complete, timeout_s=30, what="the new topics in the metadata")
    metadata = seen[0]
    for name in names:
        replicas = {len(p.replicas) for p in metadata.topics[name].partitions.values()}
        assert replicas == {3}, f"{name}: {replicas} replicas"
    resources = [ConfigResource("topic", name) for name in _topics(s)]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result()["min.insync.replicas"].value == "2", resource


@pytest.mark.chaos
@pytest.mark.parametrize(
    ("documents", "window_s"),
    [
        pytest.param(8, 8.0, id="short", marks=pytest.mark.timeout(300)),
        pytest.param(40, 45.0, id="long", marks=[pytest.mark.long, pytest.mark.timeout(1500)]),
    ],
)
def test_leader_and_a_second_broker_killed_mid_run(
    documents: int,
    window_s: float,
    settings: Settings,
    replicated: KafkaCluster,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    cluster = replicated
    started = time.monotonic()
    s = chaos_settings(
        with_brokers(settings.model_copy(update={"kafka_bootstrap": cluster.bootstrap}), 3)
    )
    assert (s.replication_factor, s.min_insync_replicas) == (3, 2)
    bad = [Hostile("r-truncated.pdf", truncated_pdf(41), "failed", "CorruptDocument")]
    workload = Workload(s, corpus.mixed(documents, seed=41), bad)
    workload.interleave(41)
    submitter = prepare(s)
    create_topics(s, [PROBE])
    check_topic_replication(s)
    assert probe_writes(s) == ["ok"] * s.partitions

    timings: dict[str, float] = {}
    n = len(workload.items)
    # Uploads in three waves: with three brokers, with two, and with one (these must block).
    waves = (0, n // 2, (3 * n) // 4, n)
    with crew_of(s, tmp_path / "logs", seed=41) as crew:
        crew.start()
        submitting = [workload.submit_in_background(submitter, pace_s=0.3, stop=waves[1])]
        try:
            # 1. The leader of the busiest partition, SIGKILLed under load.
            wait_for_progress(s, workload, "chunked", 2)
            topic, partition, first = busiest(s, {1, 2, 3})
            cluster.kill_broker(first)
            killed_at = time.monotonic()
            timings["first_kill"] = killed_at - started
            poll(
                lambda: first not in cluster.registered(),
                timeout_s=60,
                what=f"broker {first} fenced",
            )
            timings["fenced"] = time.monotonic() - killed_at
            # Two brokers left: min.insync.replicas is met, the pipeline carries on.
            submitting.append(
                workload.submit_in_background(submitter, pace_s=0.3, start=waves[1], stop=waves[2])
            )
            assert probe_writes(s) == ["ok"] * s.partitions
            wait_for_progress(s, workload, "chunked", waves[1] + 1)

            # 2. A second broker: the leader of the busiest partition among the two left.
            left = set(cluster.alive())
            _, _, second = busiest(s, left)
            cluster.kill_broker(second)
            (survivor,) = left - {second}
            killed_at = time.monotonic()
            timings["second_kill"] = killed_at - started
            names = [*_topics(s), s.topic(PROBE)]
            poll(
                lambda: (
                    cluster.registered() == {survivor}
                    and all(isr <= {survivor} for isr in in_sync_sets(s, names).values())
                ),
                timeout_s=60,
                what=f"brokers {first} and {second} out of every ISR",
            )
            timings["isr_shrunk"] = time.monotonic() - killed_at

            # 3. One broker left: nothing is acknowledged, whoever writes.
            window_start = time.monotonic()
            before = watermarks(s)
            accepted = len(workload.submitted)
            submitting.append(workload.submit_in_background(submitter, pace_s=0.3, start=waves[2]))
            pipeline_producer = probe_writes(s)
            no_retries = probe_writes(s, **{"enable.idempotence": False, "retries": 0})
            time.sleep(max(window_s - (time.monotonic() - window_start), 0.0))
            after = watermarks(s)
            blocked = len(workload.submitted) - accepted
            window = time.monotonic() - window_start
            assert "ok" not in pipeline_producer, pipeline_producer
            assert set(no_retries) <= {
                "NOT_ENOUGH_REPLICAS",
                "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            }, no_retries
            readable = [tp for tp, h in after.items() if h is not None and before[tp] is not None]
            moved = {f"{t}/{p}": (before[(t, p)], after[(t, p)]) for t, p in readable}
            moved = {tp: hs for tp, hs in moved.items() if hs[0] != hs[1]}
            assert not moved, f"writes acknowledged with one broker in sync: {moved}"
            assert blocked == 0, f"{blocked} uploads acknowledged with one broker in sync"
        finally:
            # 4. Both back, started together.
            restart_at = time.monotonic()
            cluster.start()
        healed = time.monotonic()
        timings["restart"] = healed - restart_at
        cluster.wait_in_sync()
        timings["in_sync"] = time.monotonic() - healed
        for wave in submitting:
            wave.result(timeout=240)
        assert not workload.refused, f"uploads refused, not delayed: {workload.refused}"
        finish(
            request,
            s,
            workload,
            crew,
            name=f"replicated-leader-kill-{request.node.callspec.id}",
            faults=2,
            healed_at=healed,
            extra=lambda: (
                f"brokers=3 rf=3 min_isr=2; at {timings['first_kill']:.0f}s killed b{first} "
                f"(leader of {topic.removeprefix(s.topic_prefix)}[{partition}]), fenced in "
                f"{timings['fenced']:.1f}s; at {timings['second_kill']:.0f}s killed b{second}, "
                f"ISR down to b{survivor} in {timings['isr_shrunk']:.1f}s; one broker for "
                f"{window:.0f}s: 0 writes acknowledged ({n - waves[2]} uploads blocked, "
                f"watermarks still on {len(readable)}/{len(after)} readable partitions, "
                f"pipeline producer {sorted(set(pipeline_producer))}, "
                f"no-retry producer {sorted(set(no_retries))}); both back in "
                f"{timings['restart']:.1f}s, in sync {timings['in_sync']:.1f}s later; "
                f"total {time.monotonic() - started:.0f}s"
            ),
        )
    offsets = _admin(s).list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"]
    assert {len(p.replicas) for p in offsets.partitions.values()} == {3}
