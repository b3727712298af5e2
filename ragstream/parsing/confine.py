"""What a parser child can reach, and (see below) taking it away.

:func:`observe` is the test and diagnosis hook: run in a parser child in place
of a parse (``sandbox._probe``), it reports what that child can see of the
environment and whether it can open a TCP connection.
"""

from __future__ import annotations

import os
import socket


def _read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"error: {type(exc).__name__}: {exc}"


def _opens(path: str) -> str:
    try:
        with open(path, "rb"):
            return "opened"
    except OSError as exc:
        return f"error: {type(exc).__name__}: {exc}"


def observe(worker_pid: int, port: int) -> dict[str, str]:
    """What this process can see: its environment, the environment of its parent
    (the fork server) and of ``worker_pid``, and whether 127.0.0.1:``port`` answers."""
    facts = {
        "environ": "\0".join(f"{key}={value}" for key, value in os.environ.items()),
        "self_environ": _read("/proc/self/environ"),
        "parent_environ": _read(f"/proc/{os.getppid()}/environ"),
        "worker_environ": _read(f"/proc/{worker_pid}/environ"),
        "worker_mem": _opens(f"/proc/{worker_pid}/mem"),
    }
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            facts["connect"] = "connected"
    except OSError as exc:
        facts["connect"] = f"error: {type(exc).__name__}: {exc}"
    return facts
