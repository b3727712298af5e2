"""A real S3-compatible server for development and tests: S3Proxy on its filesystem backend.

One jar (``org.gaul:s3proxy``, jar-with-dependencies, Apache-2.0) from Maven
Central, pinned by its sha256 and fetched like Kafka's (``jars.py``), run on the
same Java 17+. Objects are plain files under ``DATA_DIR/s3proxy/data``; the
port and credentials are kept with them, so a restart comes back at the same
address with the same buckets.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ragstream.devstack.jars import MAVEN_CENTRAL, JarFetchError, LockedJar, fetch_locked
from ragstream.devstack.kafka import DevstackError, require_java
from ragstream.devstack.process import free_port, read_pid, terminate

S3PROXY_JAR = LockedJar(
    group="org.gaul",
    artifact="s3proxy",
    version="4.1.0",
    sha256="a4d025969aaf796616ed4b1e2491d87d455ce84bb28cb9db086b2e6aaa68b48d",
    url=f"{MAVEN_CENTRAL}/org/gaul/s3proxy/4.1.0/s3proxy-4.1.0-jar-with-dependencies.jar",
)


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"


@dataclass(frozen=True)
class S3ProxyStatus:
    running: bool
    endpoint: S3Endpoint | None
    version: str
    pid: int | None


class LocalS3Proxy:
    def __init__(self, data_dir: Path, cache_dir: Path) -> None:
        self.home = data_dir / "s3proxy"
        self.libs = cache_dir / "s3proxy"
        self.pid_file = self.home / "s3proxy.pid"
        self.state = self.home / "endpoint.json"

    def endpoint(self) -> S3Endpoint:
        """The address and credentials, made once and kept with the data."""
        try:
            return S3Endpoint(**json.loads(self.state.read_text()))
        except FileNotFoundError:
            pass
        self.home.mkdir(parents=True, exist_ok=True)
        made = S3Endpoint(
            url=f"http://127.0.0.1:{free_port()}",
            access_key_id="ragstream",
            secret_access_key=secrets.token_hex(16),
        )
        self.state.write_text(json.dumps(made.__dict__))
        self.state.chmod(0o600)
        return made

    def start(self, timeout_s: float = 60.0) -> S3Endpoint:
        endpoint = self.endpoint()
        if read_pid(self.pid_file) is not None:
            self.wait_ready(endpoint, timeout_s)
            return endpoint
        try:
            fetch_locked(self.libs, [S3PROXY_JAR])
        except JarFetchError as exc:
            raise DevstackError(f"S3Proxy: {exc}") from exc
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.home / "s3proxy.conf"
        config.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint={endpoint.url}",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={endpoint.access_key_id}",
                    f"s3proxy.credential={endpoint.secret_access_key}",
                    "jclouds.provider=filesystem-nio2",
                    f"jclouds.filesystem.basedir={data}",
                    "",
                ]
            )
        )
        with open(self.home / "s3proxy.stdout", "ab") as out:
            proc = subprocess.Popen(
                [
                    require_java(),
                    "-Xmx256m",
                    "-jar",
                    str(self.libs / S3PROXY_JAR.file_name),
                    "--properties",
                    str(config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self.wait_ready(endpoint, timeout_s)
        return endpoint

    def wait_ready(self, endpoint: S3Endpoint, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _answers(endpoint.url):
                return
            if read_pid(self.pid_file) is None:
                break
            time.sleep(0.2)
        log = self.home / "s3proxy.stdout"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise DevstackError(f"S3Proxy did not answer at {endpoint.url}:\n{tail}")

    def stop(self, timeout_s: float = 30.0) -> None:
        pid = read_pid(self.pid_file)
        if pid is not None:
            terminate(pid, timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> S3ProxyStatus:
        pid = read_pid(self.pid_file)
        endpoint = self.endpoint() if self.state.exists() else None
        running = pid is not None and endpoint is not None and _answers(endpoint.url)
        return S3ProxyStatus(running, endpoint, f"S3Proxy {S3PROXY_JAR.version}", pid)


def _answers(url: str) -> bool:
    """Any HTTP answer (403 without credentials) means the server is up."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
