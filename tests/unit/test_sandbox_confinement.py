"""A parser child sees none of the worker's secrets and cannot reach the network.

Each test starts a worker process with secrets in its environment, as the parse
pod's worker has them, and asks its sandbox to fork a parser child that reports
what it can read and reach (``sandbox._probe``, the fork server's test hook:
the child is forked and set up exactly as for a parse, then observes instead of
parsing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ragstream

SECRETS = {
    "RAGSTREAM_DATABASE_URL": "postgresql://u:s3cret-db@db.example:5432/ragstream",
    "RAGSTREAM_KAFKA_SASL_PASSWORD": "s3cret-kafka",
    "AWS_SECRET_ACCESS_KEY": "s3cret-aws",
    "OPENAI_API_KEY": "sk-s3cret-openai",
    "LLAMA_CLOUD_API_KEY": "llx-s3cret-llama",
    "SOME_UNKNOWN_TOKEN": "s3cret-unknown",
}
PACKAGE_ROOT = str(Path(ragstream.__file__).resolve().parent.parent)
NON_ROOT = 10001

WORKER = """
import json, sys
from ragstream.parsing.sandbox import _probe, parse_document

facts = _probe(int(sys.argv[1]))
html = b"<html><body><h1>Title</h1><p>Some text.</p></body></html>"
document = parse_document(html, filename="a.html", timeout_s=30, memory_mb=512)
facts["parsed"] = " | ".join(block.text for block in document.blocks)
print(json.dumps(facts))
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    with server:
        server.setblocking(False)
        yield server


def _as_user(uid: int | None) -> Callable[[], None] | None:
    if uid is None:
        return None

    def become_user() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return become_user


def _interpreter(uid: int | None, env: dict[str, str]) -> str:
    """This interpreter, or one of the same version that ``uid`` may run (a virtualenv
    made from an interpreter under /root is out of a non-root user's reach)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import ragstream.parsing.sandbox"],
                env=env,
                cwd="/",
                capture_output=True,
                timeout=60,
                preexec_fn=_as_user(uid),
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no {version} that uid {uid} can run with this project's packages")


def run_worker(port: int, uid: int | None) -> dict[str, str]:
    """A worker process with secrets in its environment: what its parser child saw."""
    env = dict(os.environ, **SECRETS)
    paths = sysconfig.get_paths()
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([PACKAGE_ROOT, paths["purelib"], paths["platlib"]])
    )
    if uid is not None:
        env["HOME"] = "/nonexistent"
    result = subprocess.run(
        [_interpreter(uid, env), "-c", WORKER, str(port)],
        env=env,
        cwd="/",
        capture_output=True,
        timeout=120,
        preexec_fn=_as_user(uid),
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    facts: dict[str, str] = json.loads(result.stdout)
    return facts


USERS = [
    pytest.param(None, id="as-this-user"),
    pytest.param(
        NON_ROOT,
        id="as-non-root",
        marks=pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users"),
    ),
]


@pytest.mark.parametrize("uid", USERS)
def test_a_parser_child_cannot_read_the_workers_secrets(
    listener: socket.socket, uid: int | None
) -> None:
    facts = run_worker(listener.getsockname()[1], uid)
    for where in ("environ", "self_environ", "parent_environ", "worker_environ"):
        for name, secret in SECRETS.items():
            assert secret not in facts[where], f"{name} is readable in {where}"
            assert f"{name}=" not in facts[where], f"{name} is set in {where}"
    assert facts["worker_mem"] != "opened"
    assert facts["parsed"] == "Title | Some text."


@pytest.mark.parametrize("uid", USERS)
def test_a_parser_child_cannot_open_a_tcp_connection(
    listener: socket.socket, uid: int | None
) -> None:
    facts = run_worker(listener.getsockname()[1], uid)
    assert facts["connect"].startswith("error:"), facts["connect"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    assert facts["parsed"] == "Title | Some text."
