"""A replicated Apache Kafka for development and tests: one KRaft controller, N brokers.

Each node is its own JVM on the loopback (``-Xmx512m`` a broker, less for the
controller), under ``data_dir/kafka-cluster``: ``controller/``, ``broker-1/``
... ``broker-N/``, with the ports and the cluster id kept in ``cluster.json``
so a restart comes back at the same addresses. The controller is apart from
the brokers, so a cluster that has lost brokers still has its quorum: it fences
the dead ones, elects new leaders and shrinks the in-sync replica sets, and a
write with ``acks=all`` to a partition with fewer than ``min.insync.replicas``
in sync is refused (``NOT_ENOUGH_REPLICAS``), as on a production cluster.

With three or more brokers every topic defaults to three replicas and two in
sync, the internal ones (``__consumer_offsets``, transactions, share groups)
included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ragstream.devstack.kafka import (
    KAFKA_VERSION,
    DevstackError,
    KafkaProcess,
    KafkaStatus,
    ensure_jars,
    new_cluster_id,
)
from ragstream.devstack.process import free_port, port_open

CONTROLLER_ID = 0
"""The controller's node id; brokers are 1..N."""

BROKER_SESSION_TIMEOUT_MS = 6000
"""A broker silent this long is fenced: its partitions get new leaders, it leaves every ISR."""


def replication_for(brokers: int) -> tuple[int, int]:
    """Replication factor and min.insync.replicas that suit ``brokers`` brokers."""
    replicas = min(3, brokers)
    return replicas, 2 if replicas >= 3 else 1


class KafkaCluster:
    """A KRaft controller and ``brokers`` brokers under ``data_dir/kafka-cluster``."""

    def __init__(
        self, data_dir: Path, cache_dir: Path, brokers: int = 3, version: str = KAFKA_VERSION
    ) -> None:
        if brokers < 2:
            raise ValueError("a cluster has two brokers or more; one is LocalKafka")
        self.home = data_dir / "kafka-cluster"
        self.version = version
        self.brokers = brokers
        self.libs = cache_dir / "kafka" / version / "libs"
        self.state_file = self.home / "cluster.json"
        self.controller = KafkaProcess(self.home / "controller", self.libs, version, heap="256m")
        self.nodes = {
            i: KafkaProcess(self.home / f"broker-{i}", self.libs, version)
            for i in range(1, brokers + 1)
        }

    # --- set-up ---------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        if self.state_file.exists():
            state: dict[str, Any] = json.loads(self.state_file.read_text())
            if len(state["brokers"]) != self.brokers:
                raise DevstackError(
                    f"{self.home} holds a cluster of {len(state['brokers'])} brokers, not "
                    f"{self.brokers}: use that count or another data dir"
                )
            return state
        state = {
            "cluster_id": new_cluster_id(),
            "controller": free_port(),
            "brokers": {str(i): free_port() for i in self.nodes},
        }
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))
        return state

    def port(self, broker: int) -> int:
        return int(self._state()["brokers"][str(broker)])

    def _write_configs(self) -> None:
        state = self._state()
        controller = int(state["controller"])
        common = [
            f"controller.quorum.voters={CONTROLLER_ID}@127.0.0.1:{controller}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        ]
        self.controller.write_config(
            [
                "process.roles=controller",
                f"node.id={CONTROLLER_ID}",
                *common,
                f"listeners=CONTROLLER://127.0.0.1:{controller}",
                f"log.dirs={self.controller.log_dir}",
                f"broker.session.timeout.ms={BROKER_SESSION_TIMEOUT_MS}",
            ]
        )
        replicas, min_isr = replication_for(self.brokers)
        for i, node in self.nodes.items():
            port = self.port(i)
            node.write_config(
                [
                    "process.roles=broker",
                    f"node.id={i}",
                    *common,
                    f"listeners=PLAINTEXT://127.0.0.1:{port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={node.log_dir}",
                    "broker.heartbeat.interval.ms=1000",
                    "num.partitions=1",
                    f"default.replication.factor={replicas}",
                    f"min.insync.replicas={min_isr}",
                    "unclean.leader.election.enable=false",
                    f"offsets.topic.replication.factor={replicas}",
                    "offsets.topic.num.partitions=10",
                    f"transaction.state.log.replication.factor={replicas}",
                    f"transaction.state.log.min.isr={min_isr}",
                    f"share.coordinator.state.topic.replication.factor={replicas}",
                    f"share.coordinator.state.topic.min.isr={min_isr}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.hours=-1",
                ]
            )

    # --- addresses ------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """Every broker's address: clients find the cluster while any one of them is up."""
        return ",".join(f"127.0.0.1:{self.port(i)}" for i in self.nodes)

    def broker_of(self, address: str) -> int:
        port = int(address.rsplit(":", 1)[1])
        for i in self.nodes:
            if self.port(i) == port:
                return i
        raise KeyError(address)

    # --- lifecycle ------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> str:
        """Start every node not running and wait until every broker is registered."""
        ensure_jars(self.libs, self.version)
        self._write_configs()
        cluster_id = str(self._state()["cluster_id"])
        for node in (self.controller, *self.nodes.values()):
            node.format_storage(cluster_id)
        if self.controller.pid() is None:
            self._check_free(int(self._state()["controller"]))
            self.controller.launch()
        for i, node in self.nodes.items():
            if node.pid() is None:
                self._check_free(self.port(i))
                node.launch()
        self.wait_brokers(self.nodes, timeout_s)
        return self.bootstrap

    def start_broker(self, broker: int, timeout_s: float = 90.0) -> None:
        """Bring one broker back (after a kill or stop) and wait until it is registered."""
        node = self.nodes[broker]
        if node.pid() is None:
            self._check_free(self.port(broker))
            node.launch()
        self.wait_brokers([broker], timeout_s)

    def stop_broker(self, broker: int, timeout_s: float = 60.0) -> None:
        """SIGTERM: a controlled shutdown that hands its leaderships over first."""
        self.nodes[broker].stop(timeout_s)

    def kill_broker(self, broker: int) -> None:
        """SIGKILL one broker, as a crash would; its data stays for a restart."""
        self.nodes[broker].kill()

    def alive(self) -> list[int]:
        return [i for i, node in self.nodes.items() if node.pid() is not None]

    def stop(self, timeout_s: float = 60.0) -> None:
        """Brokers first (their controlled shutdown needs the controller), then the controller."""
        for node in self.nodes.values():  # all at once: each one's shutdown takes seconds
            pid = node.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        for node in self.nodes.values():
            node.stop(timeout_s)
        self.controller.stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in (*self.nodes.values(), self.controller):
            node.kill()

    def _check_free(self, port: int) -> None:
        if port_open(port):
            raise DevstackError(f"port {port} kept for Kafka is taken by another process")

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def registered(self, timeout_s: float = 5.0) -> set[int]:
        """The brokers the cluster's metadata lists (registered and not fenced)."""
        return set(self._admin().list_topics(timeout=timeout_s).brokers)

    def wait_brokers(self, brokers: Iterable[int], timeout_s: float) -> None:
        want = set(brokers)
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            for i in want:
                if self.nodes[i].pid() is None:
                    raise DevstackError(f"Kafka broker {i} exited; see {self.nodes[i].log_file}")
            if self.controller.pid() is None:
                raise DevstackError(f"Kafka controller exited; see {self.controller.log_file}")
            try:
                if want <= self.registered(timeout_s=2):
                    return
            except Exception as exc:  # still coming up
                last = exc
            time.sleep(0.3)
        raise DevstackError(
            f"Kafka brokers {sorted(want)} not registered after {timeout_s:.0f}s ({last}); "
            f"see {self.home}/*/kafka.log"
        )

    def under_replicated(self, timeout_s: float = 5.0) -> list[str]:
        """``topic/partition`` of every partition whose ISR lacks one of its replicas."""
        metadata = self._admin().list_topics(timeout=timeout_s)
        return [
            f"{name}/{p.id}"
            for name, topic in metadata.topics.items()
            for p in topic.partitions.values()
            if set(p.isrs) != set(p.replicas)
        ]

    def wait_in_sync(self, timeout_s: float = 120.0) -> None:
        """Until every partition has all its replicas in sync again."""
        deadline = time.monotonic() + timeout_s
        behind: list[str] = []
        while time.monotonic() < deadline:
            try:
                behind = self.under_replicated()
                if not behind:
                    return
            except Exception as exc:  # a broker is still coming up
                behind = [str(exc)]
            time.sleep(0.5)
        raise DevstackError(f"partitions not back in sync after {timeout_s:.0f}s: {behind[:10]}")

    def status(self) -> KafkaStatus:
        pid = self.controller.pid()
        running = pid is not None and all(
            node.pid() is not None and port_open(self.port(i)) for i, node in self.nodes.items()
        )
        alive = self.alive()
        return KafkaStatus(
            running=running,
            bootstrap=self.bootstrap if self.state_file.exists() else None,
            version=self.controller.running_version(pid) or self.version,
            mode=f"KRaft (1 controller, {len(alive)}/{self.brokers} brokers up)",
            pid=pid,
        )
