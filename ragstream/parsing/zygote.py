"""The parser fork server, run as ``python -m ragstream.parsing.zygote CONTROL_FD``.

Starting a fresh interpreter and importing PDFium, lxml, BeautifulSoup and
python-docx costs a few hundred milliseconds; forking a process that already
has them costs a few. This process imports them once, then forks one child
per document. It stays single-threaded so that forking is safe.

The parent sends each request as a datagram on the control socket: a JSON
object with ``timeout_s`` and, attached, one end of a fresh socket pair on
which the forked child talks to the parent. The fork server enforces the
deadline (it is the child's parent, so a kill can never hit a recycled pid)
and, once the child is reaped, appends ``EXIT <how> <value>\\n`` to that
socket: ``code N``, ``signal N`` or ``timeout 0``.

Before it says ``READY`` (followed by a JSON list of what holds), it confines
itself, and so every child it will fork, with :mod:`ragstream.parsing.confine`:
no network, no capabilities, no secrets. A request may carry ``probe``
(``worker_pid`` and ``port``) instead of a document: the child then replies
what it can read and reach (:func:`ragstream.parsing.confine.observe`), for
tests and diagnosis.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass

from ragstream.parsing import confine

_GRACE_S = 2  # the child's own alarm fires this long after the deadline


@dataclass
class _Child:
    conn: socket.socket
    deadline: float
    timed_out: bool = False


def preload() -> None:
    """Import and warm up every parser so forked children start ready."""
    import ragstream.parsing.child  # noqa: F401
    from ragstream.parsing import docx, pdf
    from ragstream.parsing.core import parse_bytes

    docx.parser_version()
    pdf.parser_version()

    # First calls load more: bs4's tree builder, charset-normalizer's tables.
    parse_bytes(b"<html><body><h1>warm</h1><p>up</p></body></html>")
    parse_bytes(b"# warm\n\nup")
    parse_bytes("caf\u00e9 cr\u00e8me, d\u00e9j\u00e0 vu\n".encode("cp1252"))


def main(control_fd: int) -> int:
    os.dup2(2, 1)  # whatever a library prints ends up in the log, never on a socket
    control = socket.socket(fileno=control_fd)
    # No secrets, no network, for this process and so for every child it forks
    # (see ragstream.parsing.confine for what holds where).
    confine.scrub_environ()  # the worker passes an allow-list already: in case of another caller
    held = [layer for layer in (confine.isolate_network(),) if layer]  # while single-threaded
    preload()
    held += confine.confine()
    gc.freeze()  # keep preloaded objects out of collections: children share their pages
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_write)
    children: dict[int, _Child] = {}
    control.sendall(b"READY " + json.dumps(held).encode("utf-8"))
    try:
        while True:
            timeout = _until_next_deadline(children)
            readable, _, _ = select.select([control.fileno(), wake_read], [], [], timeout)
            if wake_read in readable:
                os.read(wake_read, 4096)
            if control.fileno() in readable and not _accept(
                control, children, (wake_read, wake_write)
            ):
                break  # the parent is gone
            _reap(children)
            _kill_overdue(children)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return 0


def _until_next_deadline(children: dict[int, _Child]) -> float | None:
    pending = [child.deadline for child in children.values() if not child.timed_out]
    if not pending:
        return None
    return max(0.0, min(pending) - time.monotonic())


def _accept(control: socket.socket, children: dict[int, _Child], private: tuple[int, int]) -> bool:
    message, fds, _, _ = socket.recv_fds(control, 4096, 1)
    if not message and not fds:
        return False
    if not fds:
        return True  # nothing to answer on
    conn = socket.socket(fileno=fds[0])
    request = json.loads(message)
    timeout_s = float(request["timeout_s"])
    probe = request.get("probe")
    try:
        pid = os.fork()
    except OSError:
        _finish(conn, b"forkfail", 0)
        return True
    if pid == 0:
        _become_child(conn, control, children, private, timeout_s, probe)
    children[pid] = _Child(conn, time.monotonic() + timeout_s)
    return True


def _become_child(
    conn: socket.socket,
    control: socket.socket,
    children: dict[int, _Child],
    private: tuple[int, int],
    timeout_s: float,
    probe: dict[str, int] | None = None,
) -> None:
    """In the forked child: shed the fork server's state, serve, and never return."""
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for other in children.values():
            other.conn.close()  # or a sibling's parent would wait for our exit too
        for fd in private:
            os.close(fd)
        # Should the fork server die, the child still ends near its deadline.
        signal.alarm(int(timeout_s) + 1 + _GRACE_S)
        if probe is not None:
            _observe(conn, probe)
        else:
            from ragstream.parsing.child import serve

            serve(conn)
        status = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(status)


def _observe(conn: socket.socket, probe: dict[str, int]) -> None:
    """Test and diagnosis only: reply what this child can reach, in place of a parse."""
    facts = confine.observe(int(probe["worker_pid"]), int(probe["port"]))
    body = json.dumps(facts).encode("utf-8")
    conn.sendall(b"OK %d\n" % len(body) + body)


def _reap(children: dict[int, _Child]) -> None:
    while children:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child = children.pop(pid, None)
        if child is None:
            continue
        if child.timed_out:
            _finish(child.conn, b"timeout", 0)
        elif os.WIFSIGNALED(wait_status):
            _finish(child.conn, b"signal", os.WTERMSIG(wait_status))
        else:
            _finish(child.conn, b"code", os.waitstatus_to_exitcode(wait_status))


def _kill_overdue(children: dict[int, _Child]) -> None:
    now = time.monotonic()
    for pid, child in children.items():
        if not child.timed_out and now >= child.deadline:
            child.timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _finish(conn: socket.socket, how: bytes, value: int) -> None:
    with contextlib.suppress(OSError):
        conn.setblocking(False)  # a parent that stopped reading must not stall us
        conn.send(b"EXIT %s %d\n" % (how, value))
    conn.close()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
