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
from ragstream.parsing import confine
from ragstream.parsing.sandbox import _ForkServer, parse_document

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

EXAMPLES = Path(PACKAGE_ROOT) / "examples" / "documents"
# What the sandboxed child parses, compared with an in-process parse.
DOCUMENTS = (
    "stream-processing-field-guide.pdf",
    "event-sourcing-handbook.docx",
    "ingestion-pipeline.html",
)

# The worker: optionally first refuses itself the system calls a container's default
# seccomp profile refuses (argv[2], comma-separated numbers), as Docker does before
# starting the image's command; then has its sandbox probe, and parse, in a child.
WORKER = """
import json, os, sys
from ragstream.parsing import confine
if sys.argv[2]:
    assert confine.deny_syscalls([int(n) for n in sys.argv[2].split(",")])
from ragstream.parsing import parse_bytes
from ragstream.parsing.sandbox import _ForkServer, _probe, parse_document

facts = _probe(int(sys.argv[1]))
facts["confinement"] = "; ".join(_ForkServer.get().confinement)
html = b"<html><body><h1>Title</h1><p>Some text.</p></body></html>"
document = parse_document(html, filename="a.html", timeout_s=30, memory_mb=512)
facts["parsed"] = " | ".join(block.text for block in document.blocks)
for path in sys.argv[3:]:
    data = open(path, "rb").read()
    sandboxed = parse_document(data, filename=None, timeout_s=60, memory_mb=1024)
    assert sandboxed == parse_bytes(data), path
    facts["parsed"] += f" | {os.path.basename(path)}: {len(sandboxed.blocks)} blocks"
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


def run_worker(port: int, uid: int | None, denied: tuple[int, ...] = ()) -> dict[str, str]:
    """A worker process with secrets in its environment: what its parser child saw."""
    env = dict(os.environ, **SECRETS)
    paths = sysconfig.get_paths()
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([PACKAGE_ROOT, paths["purelib"], paths["platlib"]])
    )
    if uid is not None:
        env["HOME"] = "/nonexistent"
    result = subprocess.run(
        [
            _interpreter(uid, env),
            "-c",
            WORKER,
            str(port),
            ",".join(map(str, denied)),
            *(str(EXAMPLES / name) for name in DOCUMENTS),
        ],
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
    if "Landlock" in facts["confinement"]:
        assert facts["write"].startswith("error: PermissionError")
    assert_parsed(facts)


@pytest.mark.parametrize("uid", USERS)
def test_a_parser_child_cannot_open_a_tcp_connection(
    listener: socket.socket, uid: int | None
) -> None:
    facts = run_worker(listener.getsockname()[1], uid)
    assert facts["connect"].startswith("error:"), facts["connect"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    assert_parsed(facts)


def assert_parsed(facts: dict[str, str]) -> None:
    parsed = facts["parsed"].split(" | ")
    assert parsed[:2] == ["Title", "Some text."]
    assert [entry.split(":")[0] for entry in parsed[2:]] == list(DOCUMENTS)


# In a container with the default seccomp profile of Docker (and of Kubernetes'
# RuntimeDefault) and without CAP_SYS_ADMIN, unshare() of any namespace fails;
# Landlock is allowed from Docker 23 on, refused before.
_UNSHARE = {"x86_64": 272, "aarch64": 97}
_LANDLOCK = (444, 445, 446)
CONTAINERS = [
    pytest.param(False, id="container"),
    pytest.param(True, id="container-without-landlock"),
]


def _container_profile(without_landlock: bool) -> tuple[int, ...]:
    unshare = _UNSHARE.get(confine._machine())
    if unshare is None:
        pytest.skip("no seccomp filter on this machine")
    return (unshare, *(_LANDLOCK if without_landlock else ()))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
@pytest.mark.parametrize("without_landlock", CONTAINERS)
def test_in_a_container_the_seccomp_filter_still_blocks_the_network(
    listener: socket.socket, without_landlock: bool
) -> None:
    facts = run_worker(listener.getsockname()[1], NON_ROOT, _container_profile(without_landlock))
    assert "network namespace" not in facts["confinement"]
    assert ("Landlock" in facts["confinement"]) is not without_landlock
    assert "seccomp" in facts["confinement"]
    assert "PermissionError" in facts["connect"], facts["connect"]
    with pytest.raises(BlockingIOError):
        listener.accept()
    for where in ("environ", "self_environ", "parent_environ"):
        for secret in SECRETS.values():
            assert secret not in facts[where]
    # Without Landlock, the worker made itself non-dumpable instead.
    assert facts["worker_environ"].startswith("error: PermissionError")
    assert facts["worker_mem"].startswith("error: PermissionError")
    if not without_landlock:
        assert facts["write"].startswith("error: PermissionError")
    assert_parsed(facts)


def test_the_environment_passed_on_is_an_allow_list() -> None:
    environ = {
        **SECRETS,
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "de_DE.UTF-8",
        "PYTHONPATH": "/app",
        "HOME": "/home/ragstream",
        "DATABASE_URL": "postgresql://x:y@z/w",
        "KAFKA_SASL_PASSWORD": "p",
        "PGPASSWORD": "p",
    }
    assert confine.scrubbed_environ(environ) == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "de_DE.UTF-8",
        "PYTHONPATH": "/app",
        "HOME": "/home/ragstream",
    }


def test_the_fork_server_reports_what_confines_it() -> None:
    parse_document(b"hello", filename=None, timeout_s=30, memory_mb=512)
    held = _ForkServer.get().confinement
    if confine._machine() in ("x86_64", "aarch64"):
        assert any(layer.startswith("seccomp") for layer in held), held
