"""What a bench run stands on: its own databases and topics, and real worker processes.

Every pipeline run gets a fresh database (a copy of one migrated template) and
its own topic prefix, so runs never see each other's documents, vectors or
cache. Workers are started the way ``ragstream up`` starts them, by a
``ragstream supervise`` process; the bench finds each worker's health port to
know when it owns partitions and to read its metrics, and reads each worker's
peak resident memory (VmHWM) from the kernel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ragstream.db import migrate
from ragstream.db.engine import make_engine
from ragstream.kafka import admin_client, create_topics
from ragstream.settings import Settings
from ragstream.topology import STAGE_NAMES

MiB = 1024 * 1024


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build these same settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"RAGSTREAM_{name.upper()}"] = str(value)
    return env


class BenchDatabases:
    """Fresh databases on the settings' PostgreSQL server, all dropped by :meth:`close`."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings
        self.run_id = uuid.uuid4().hex[:8]
        self.template = f"ragstream_bench_{self.run_id}_tpl"
        self.made: list[str] = []
        self.prefixes: list[str] = []
        self._admin(f'CREATE DATABASE "{self.template}"')
        migrate.upgrade(self._url(self.template))

    def _url(self, database: str) -> str:
        return make_url(self.base.db_url).set(database=database).render_as_string(False)

    def _admin(self, statement: str) -> None:
        dsn = make_url(self.base.db_url).set(drivername="postgresql", database="postgres")
        with psycopg.connect(dsn.render_as_string(False), autocommit=True) as conn:
            conn.execute(statement)

    def fresh(self, label: str, **overrides: object) -> Settings:
        """Settings of an empty, migrated database and an unused topic prefix."""
        name = f"ragstream_bench_{self.run_id}_{label}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.made.append(name)
        prefix = f"bench-{self.run_id}-{label}."
        self.prefixes.append(prefix)
        settings = self.base.model_copy(
            update={"database_url": self._url(name), "topic_prefix": prefix, **overrides}
        )
        create_topics(settings)
        return settings

    def close(self) -> None:
        for name in [*self.made, self.template]:
            with contextlib.suppress(psycopg.Error):
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin = admin_client(self.base)
        topics = [
            t for t in admin.list_topics(timeout=10).topics if t.startswith(tuple(self.prefixes))
        ]
        if topics:
            for future in admin.delete_topics(topics, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()


def database_now(settings: Settings) -> float:
    """The database clock (epoch seconds): every status timestamp is stamped by it."""
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.connect() as conn:
            return float(
                conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
            )
    finally:
        engine.dispose()


@dataclass
class Worker:
    stage: str
    pid: int
    port: int | None = None


@dataclass
class StageMetrics:
    busy_s: float = 0.0
    batches: float = 0.0
    messages: float = 0.0
    dlq: float = 0.0
    embedded_texts: float = 0.0
    cache_hits: float = 0.0


@dataclass
class Workers:
    """``ragstream supervise`` with ``per_stage`` workers of every stage, on ``settings``."""

    settings: Settings
    per_stage: int
    log_dir: Path
    stage_workers: dict[str, int] = field(default_factory=dict)  # exceptions to per_stage
    workers: list[Worker] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _sampler: threading.Thread | None = None
    _sampling: threading.Event = field(default_factory=threading.Event)
    sandbox_peak_mb: float = 0.0

    def start(self, timeout_s: float = 300) -> None:
        """Start, and return once every worker owns partitions."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **settings_env(self.settings.model_copy(update={"data_dir": self.log_dir})),
        }
        with open(self.log_dir / "supervise.log", "ab") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ragstream.cli",
                    "supervise",
                    "--workers",
                    str(self.per_stage),
                    *(f"--stage-workers={s}={n}" for s, n in self.stage_workers.items()),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        expected = sum(self.stage_workers.get(s, self.per_stage) for s in STAGE_NAMES)
        while True:
            self._find_workers()
            if len(self.workers) == expected and all(self._ready(w) for w in self.workers):
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"workers not ready after {timeout_s:.0f}s; see {self.log_dir}/logs"
                )
            time.sleep(0.25)
        self._sampling.clear()
        self._sampler = threading.Thread(target=self._sample_sandbox, daemon=True)
        self._sampler.start()

    def _find_workers(self) -> None:
        assert self._proc is not None
        try:
            children = psutil.Process(self._proc.pid).children()
        except psutil.NoSuchProcess:
            return
        known = {w.pid: w for w in self.workers}
        found = []
        for child in children:
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if "worker" in cmd and cmd[-1] in STAGE_NAMES:
                found.append(known.get(child.pid) or Worker(cmd[-1], child.pid))
        self.workers = found

    def _ready(self, worker: Worker) -> bool:
        if worker.port is None:
            worker.port = _listening_port(worker.pid)
            if worker.port is None:
                return False
        try:
            return httpx.get(f"http://127.0.0.1:{worker.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _sample_sandbox(self) -> None:
        """The parse workers' sandbox processes come and go: read their peaks while they live.

        Straight from /proc (a few small reads per sample): scanning every
        process of the machine ten times a second would take CPU from the
        pipeline being measured.
        """
        while not self._sampling.wait(0.1):
            for worker in self.workers:
                if worker.stage != "parse":
                    continue
                for pid in _descendants(worker.pid):
                    peak = _vm_hwm_mb(pid)
                    if peak is not None:
                        self.sandbox_peak_mb = max(self.sandbox_peak_mb, peak)

    def metrics(self) -> dict[str, StageMetrics]:
        """Counters summed over the workers of each stage (they only grow)."""
        out: dict[str, StageMetrics] = defaultdict(StageMetrics)
        for worker in self.workers:
            if worker.port is None:
                continue
            body = httpx.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=10).text
            m = out[worker.stage]
            for family in text_string_to_metric_families(body):
                for sample in family.samples:
                    name, labels, value = sample.name, sample.labels, sample.value
                    if name == "ragstream_stage_batch_seconds_sum":
                        m.busy_s += value
                    elif name == "ragstream_stage_batch_seconds_count":
                        m.batches += value
                    elif name == "ragstream_stage_messages_total":
                        if labels.get("outcome") == "processed":
                            m.messages += value
                        else:
                            m.dlq += value
                    elif name == "ragstream_embedded_texts_total":
                        m.embedded_texts += value
                    elif (
                        name == "ragstream_embedding_cache_lookups_total"
                        and labels.get("outcome") == "hit"
                    ):
                        m.cache_hits += value
        return dict(out)

    def peak_rss_mb(self) -> dict[str, float]:
        """Each stage's largest peak resident set (the kernel's VmHWM) over its workers."""
        peaks: dict[str, float] = {}
        for worker in self.workers:
            hwm = _vm_hwm_mb(worker.pid)
            if hwm is not None:
                peaks[worker.stage] = max(peaks.get(worker.stage, 0.0), hwm)
        return peaks

    def stop(self) -> None:
        self._sampling.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                for worker in self.workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                self._proc.kill()
                self._proc.wait()

    @contextlib.contextmanager
    def running(self) -> Iterator[Workers]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


class CpuMeter:
    """Core-seconds each part of the machine used over a window: where the cores went.

    The model limit runs alone; the pipeline shares the same cores with its
    other stages, PostgreSQL and the broker (and, on a shared machine, whatever
    else runs there). Each part is the user + system time of its processes,
    with the children they reaped (parser sandboxes, PostgreSQL backends);
    ``other`` is the rest of the machine's busy time, ``idle`` what was left.
    """

    def __init__(self, parts: Callable[[], dict[str, list[int]]]) -> None:
        self._parts = parts
        self._start: dict[int, tuple[str, float]] = {}
        self._machine = 0.0
        self._began = 0.0

    def __enter__(self) -> CpuMeter:
        self._start, self._machine, self._began = self._read(), _machine_busy(), time.monotonic()
        self.core_s: dict[str, float] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._began
        end, busy = self._read(), _machine_busy() - self._machine
        used: dict[str, float] = defaultdict(float)
        for pid, (part, seconds) in end.items():
            used[part] += max(0.0, seconds - self._start.get(pid, (part, 0.0))[1])
        capacity = wall * (psutil.cpu_count() or 1)
        used["other"] = max(0.0, busy - sum(used.values()))
        used["idle"] = max(0.0, capacity - busy)
        self.core_s = {part: round(seconds, 2) for part, seconds in used.items()}
        self.capacity_core_s = round(capacity, 2)

    def _read(self) -> dict[int, tuple[str, float]]:
        seen: dict[int, tuple[str, float]] = {}
        for part, pids in self._parts().items():
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    t = psutil.Process(pid).cpu_times()
                    seen[pid] = (part, t.user + t.system + t.children_user + t.children_system)
        return seen


def stack_processes(settings: Settings, workers: Workers) -> dict[str, list[int]]:
    """The processes of a running bench stack, by part: stages, postgres, kafka, bench."""
    parts: dict[str, list[int]] = defaultdict(list)
    for worker in workers.workers:
        parts[worker.stage].append(worker.pid)
    ports = {
        "postgres": make_url(settings.db_url).port,
        "kafka": int(settings.bootstrap.split(",")[0].rsplit(":", 1)[1]),
    }
    for part, port in ports.items():
        pid = _listener(port) if port else None
        if pid is None:
            continue
        parts[part].append(pid)
        with contextlib.suppress(psutil.Error):
            parts[part] += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    parts["bench"].append(os.getpid())
    if workers._proc is not None:
        parts["bench"].append(workers._proc.pid)  # the supervisor
    return dict(parts)


def _machine_busy() -> float:
    t = psutil.cpu_times()
    idle = float(t.idle) + float(getattr(t, "iowait", 0.0)) + float(getattr(t, "guest", 0.0))
    return float(sum(t)) - idle


def _listener(port: int) -> int | None:
    """The process listening on ``port`` on this machine."""
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


def _listening_port(pid: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                return int(conn.laddr.port)
    return None


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren... of ``pid``, from the kernel's per-thread child lists."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                kids = [int(k) for k in task.read_text().split()]
                found += kids
                todo += kids
    return found


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None
