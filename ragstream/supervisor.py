"""Runs the pipeline's processes (stage workers, and extra roles) and restarts any that dies.

``ragstream up`` starts this in the background; ``ragstream down`` stops it,
and it stops its workers with SIGTERM (each finishes its batch and commits).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import structlog

from ragstream.devstack.process import read_pid, terminate
from ragstream.topology import STAGE_NAMES

log = structlog.get_logger(__name__)


@dataclass
class Child:
    role: tuple[str, ...]  # the `ragstream` command, e.g. ("worker", "embed")
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    log_file: Path | None = None


@dataclass
class Supervisor:
    log_dir: Path
    workers_per_stage: int = 1
    stage_workers: dict[str, int] = field(default_factory=dict)  # per-stage exceptions
    embed_threads: int = 0  # as configured; 0 lets the supervisor share the cores out
    env: dict[str, str] = field(default_factory=dict)
    stages: tuple[str, ...] = STAGE_NAMES
    extra_roles: tuple[tuple[str, ...], ...] = ()
    _stop: bool = False

    def _spawn(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child.log_file = (
            self.log_dir / f"{'-'.join(child.role[1:] or child.role)}-{child.index}.log"
        )
        out = open(child.log_file, "ab")  # noqa: SIM115 - the child keeps it open
        env = {**os.environ, **self.env}
        if child.role == ("worker", "embed"):
            env["RAGSTREAM_EMBED_THREADS"] = str(self.threads_per_embed_worker())
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "ragstream.cli", *child.role],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        out.close()
        child.started_at = time.monotonic()
        log.info("started", role=" ".join(child.role), pid=child.proc.pid)

    def threads_per_embed_worker(self) -> int:
        """The configured count, else the cores shared out among this machine's embed workers.

        Each of N embed workers taking every core would run N times more
        model threads than cores; those threads wait for one another at every
        layer, so oversubscribing slows all of them down.
        """
        if self.embed_threads > 0:
            return self.embed_threads
        count = self.stage_workers.get("embed", self.workers_per_stage)
        if count <= 1:
            return 0  # torch's default: every core
        return max(1, (os.cpu_count() or 1) // count)

    def run(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self._stop = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        children = [
            Child(("worker", s), i)
            for s in self.stages
            for i in range(self.stage_workers.get(s, self.workers_per_stage))
        ] + [Child(role, 0) for role in self.extra_roles]
        for child in children:
            self._spawn(child)
        while not self._stop:
            for child in children:
                assert child.proc is not None
                code = child.proc.poll()
                if code is None:
                    continue
                child.restarts += 1
                # Back off a worker that dies right after starting (a crash loop).
                quick = time.monotonic() - child.started_at < 10
                log.warning("died", role=" ".join(child.role), code=code, restarts=child.restarts)
                if quick:
                    time.sleep(min(2 ** min(child.restarts, 5), 30))
                if not self._stop:
                    self._spawn(child)
            time.sleep(0.5)
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in children:
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.proc.kill()


def start_background(
    pid_file: Path,
    log_dir: Path,
    env: dict[str, str],
    workers: int,
    roles: list[str],
    stage_workers: dict[str, int] | None = None,
) -> int:
    """Start a detached supervisor (unless one runs) and return its pid."""
    running = read_pid(pid_file)
    if running is not None:
        return running
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragstream.cli",
                "supervise",
                "--workers",
                str(workers),
                *(arg for role in roles for arg in ("--role", role)),
                *(f"--stage-workers={s}={n}" for s, n in (stage_workers or {}).items()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_background(pid_file: Path) -> bool:
    pid = read_pid(pid_file)
    if pid is None:
        return False
    terminate(pid, timeout_s=90)
    pid_file.unlink(missing_ok=True)
    return True
