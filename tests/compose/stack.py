"""The compose stack as a user runs it: `docker compose` on docker-compose.kafka.yml.

The tests reach it only the way users do: HTTP on the API's published port,
Kafka's external listener and PostgreSQL's published port on the loopback,
and `docker compose` / `docker exec` for the faults. Nothing runs on the host
but the test itself.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
PROJECT = os.environ.get("RAGSTREAM_COMPOSE_PROJECT", "ragstream-ci")
PORTS = {
    "API_PORT": os.environ.get("API_PORT", "18000"),
    "KAFKA_EXTERNAL_PORT": os.environ.get("KAFKA_EXTERNAL_PORT", "19094"),
    "POSTGRES_PORT": os.environ.get("POSTGRES_PORT", "15432"),
}
RAGSTREAM_SERVICES = ("api", "parse", "chunk", "embed", "finalize", "monitor")
ONE_SHOT = ("migrate", "topics")
UP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Keys:
    tenant: str
    operator: str

    def env_value(self) -> str:
        return f"{self.tenant}:default,{self.operator}:*"


class Compose:
    """`docker compose -p PROJECT -f docker-compose.kafka.yml` with this stack's ports and keys."""

    def __init__(self, env_file: Path, keys: Keys) -> None:
        self.env_file = env_file
        self.keys = keys
        self.api = f"http://127.0.0.1:{PORTS['API_PORT']}"
        self.kafka = f"127.0.0.1:{PORTS['KAFKA_EXTERNAL_PORT']}"
        self.database_url = (
            f"postgresql+psycopg://ragstream:ragstream@127.0.0.1:{PORTS['POSTGRES_PORT']}/ragstream"
        )

    def env(self) -> dict[str, str]:
        # The host's own RAGSTREAM_* settings would reach the containers (the compose file
        # passes them through); the tests' stack takes only what its env file says.
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTREAM_")}
        return {**base, **PORTS}

    def run(
        self, *args: str, timeout_s: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "docker", "compose", "-p", PROJECT, "-f", str(COMPOSE_FILE),
            "--env-file", str(self.env_file), *args,
        ]  # fmt: skip
        result = subprocess.run(
            cmd, env=self.env(), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def up(self, *args: str) -> None:
        self.run("up", "-d", "--no-build", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), *args,
                 timeout_s=UP_TIMEOUT_S + 60)  # fmt: skip

    def containers(self, service: str) -> list[dict[str, Any]]:
        out = self.run("ps", "-a", "--format", "json", service).stdout
        rows: list[dict[str, Any]] = []
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            parsed = json.loads(line)
            rows.extend(parsed if isinstance(parsed, list) else [parsed])
        return rows

    def container_ids(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).stdout.split()

    def logs(self, *services: str, tail: int = 60) -> str:
        return self.run("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout

    def kill_main_process(self, container: str) -> None:
        """SIGKILL the role under tini, as a crash does; the restart policy brings it back."""
        subprocess.run(
            ["docker", "exec", container, "sh", "-c", "kill -9 $(cat /proc/1/task/1/children)"],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def healthcheck(self, container: str) -> subprocess.CompletedProcess[str]:
        """Run the container's own HEALTHCHECK command inside it, as the engine does."""
        inspected = json.loads(
            subprocess.run(
                ["docker", "inspect", container], capture_output=True, text=True, check=True
            ).stdout
        )[0]
        test = inspected["Config"]["Healthcheck"]["Test"]
        argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        return subprocess.run(
            ["docker", "exec", container, *argv], capture_output=True, text=True, timeout=60
        )

    def health(self, container: str) -> str:
        return subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Health.Status}}", container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def network(self) -> str:
        return f"{PROJECT}_default"

    # --- HTTP -------------------------------------------------------------------------

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.keys.tenant}"}
        return httpx.Client(base_url=self.api, headers=headers, timeout=60)

    def upload(self, files: list[tuple[str, bytes]], *, timeout_s: float = 300) -> list[uuid.UUID]:
        """Upload each file; a 503 (a dependency is down) is retried after its Retry-After."""
        ids: list[uuid.UUID] = []
        with self.client() as client:
            for name, data in files:
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        response = client.post("/v1/documents", files={"file": (name, data)})
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code in (200, 202):
                        ids.append(uuid.UUID(_document_id(response.json())))
                        break
                    if response is not None and response.status_code != 503:
                        raise AssertionError(f"{name}: {response.status_code} {response.text}")
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{name}: no 202 within {timeout_s}s")
                    retry_after = float(response.headers.get("Retry-After", 1)) if response else 1
                    time.sleep(min(retry_after, 5))
        return ids


def _document_id(body: dict[str, Any]) -> str:
    if "document_id" in body:
        return str(body["document_id"])
    (item,) = body.get("items") or body.get("documents") or [body]
    return str(item["document_id"])


def new_env_file(directory: Path) -> tuple[Path, Keys]:
    keys = Keys(tenant=secrets.token_urlsafe(24), operator=secrets.token_urlsafe(24))
    path = directory / "compose.env"
    path.write_text(
        f"RAGSTREAM_API_KEYS={keys.env_value()}\n"
        # short sessions so that a killed member's partitions move on within seconds
        "RAGSTREAM_SESSION_TIMEOUT_S=10\n"
    )
    return path, keys


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - start < timeout_s:
        try:
            if condition():
                return time.monotonic() - start
        except Exception as exc:  # a fault may be in progress
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last})")
