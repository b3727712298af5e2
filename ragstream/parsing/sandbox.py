"""Parsing untrusted documents in a throwaway, limited process.

Parser libraries are large C code bases fed with hostile input; a document
can make them loop, allocate without bound or crash. Each document therefore
gets its own process with an address-space limit, killed when the wall-clock
limit expires. Those processes are forked from a fork server
(:mod:`ragstream.parsing.zygote`) that has the parser libraries loaded
already, which makes a sandboxed parse cost milliseconds more than an
in-process one instead of a fresh interpreter's few hundred.

The fork server is a fresh interpreter, started on first use: unlike a
multiprocessing child it never imports the caller's ``__main__`` nor inherits
its threads, locks or connections. It exits when this process closes its end
of the control socket, which the kernel does even on a crash.

The fork server is given none of this process's secrets (an allow-list of
environment variables) and confines itself, and so every parser it forks,
before it serves: no network, no capabilities, where possible no file writes
and no access to this process (:mod:`ragstream.parsing.confine`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from ragstream.documents import ParsedDocument, ParsedPayload, SpooledPayload
from ragstream.errors import (
    CorruptDocument,
    ParserLimitExceeded,
    PermanentError,
    RetryableError,
    UnsupportedDocument,
)
from ragstream.parsing.child import memory_message
from ragstream.parsing.confine import keep_children_out, scrubbed_environ

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[PermanentError]] = {
    cls.__name__: cls for cls in (UnsupportedDocument, CorruptDocument, ParserLimitExceeded)
}
_START_TIMEOUT_S = 60.0
# The fork server reports a timeout itself; this only covers a fork server gone silent.
_REPLY_GRACE_S = 5.0
_RECV_CHUNK = 1024 * 1024
_MAX_SUMMARY = 65536
_MAX_TIMEOUT_S = 7 * 24 * 3600.0  # beyond this, a "timeout" is a configuration mistake


class ByteSource(Protocol):
    """A document sent in pieces, so that it need not be in memory (a stored blob)."""

    @property
    def size(self) -> int: ...

    def __iter__(self) -> Iterator[bytes]: ...


def parse_document(
    data: bytes,
    *,
    filename: str | None,
    timeout_s: float,
    memory_mb: int,
    pages: tuple[int, int] | None = None,
) -> ParsedDocument:
    """Parse ``data`` in a sandbox limited to ``timeout_s`` seconds and ``memory_mb`` MiB.

    Permanent errors from the parser come back with their class and message;
    running out of time or memory raises :class:`ParserLimitExceeded`; a
    sandbox that cannot run at all raises a :class:`RetryableError`. About
    55 MiB of ``memory_mb`` go to the interpreter and the parser libraries.
    """
    return parse_payload(
        data, filename=filename, timeout_s=timeout_s, memory_mb=memory_mb, pages=pages
    ).document()


def parse_payload(
    data: bytes | ByteSource,
    *,
    filename: str | None,
    timeout_s: float,
    memory_mb: int,
    pages: tuple[int, int] | None = None,
) -> ParsedPayload:
    """:func:`parse_document` as the JSON to store and a summary: no blocks in this process."""
    return _run_child(
        data, filename=filename, timeout_s=timeout_s, memory_mb=memory_mb, pages=pages
    )


def parse_spooled(
    data: bytes | ByteSource,
    *,
    filename: str | None,
    timeout_s: float,
    memory_mb: int,
    spool_above: int,
    pages: tuple[int, int] | None = None,
) -> ParsedPayload | SpooledPayload:
    """:func:`parse_payload`, with a JSON of more than ``spool_above`` bytes received into a
    temporary file instead of memory."""
    return _run(
        data,
        filename=filename,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        pages=pages,
        spool_above=spool_above,
    )


def _run_child(
    data: bytes | ByteSource,
    *,
    filename: str | None,
    timeout_s: float,
    memory_mb: int,
    debug: str | None = None,
    pages: tuple[int, int] | None = None,
) -> ParsedPayload:
    """The sandbox proper; ``debug`` lets tests make the child misbehave (see ``child``)."""
    parsed = _run(
        data, filename=filename, timeout_s=timeout_s, memory_mb=memory_mb, debug=debug, pages=pages
    )
    assert isinstance(parsed, ParsedPayload)  # nothing is spooled without spool_above
    return parsed


def _run(
    data: bytes | ByteSource,
    *,
    filename: str | None,
    timeout_s: float,
    memory_mb: int,
    debug: str | None = None,
    pages: tuple[int, int] | None = None,
    spool_above: int | None = None,
) -> ParsedPayload | SpooledPayload:
    if not 0 < timeout_s < _MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be positive and finite, not {timeout_s}")
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, not {memory_mb}")
    size = len(data) if isinstance(data, bytes) else data.size
    header: dict[str, object] = {"filename": filename, "memory_mb": memory_mb, "size": size}
    if debug is not None:
        header["debug"] = debug
    if pages is not None:
        header["pages"] = list(pages)
    ours, theirs = socket.socketpair()
    with ours:
        try:
            _ForkServer.get().submit(theirs, timeout_s)
        finally:
            theirs.close()
        started = time.monotonic()
        deadline = started + timeout_s + _REPLY_GRACE_S
        _send(ours, json.dumps(header).encode("utf-8") + b"\n", data, deadline)
        received = _receive(ours, deadline, timeout_s, spool_above)
    if isinstance(received, SpooledPayload):
        return received
    return _decode(received, timeout_s, memory_mb, time.monotonic() - started)


def _probe(port: int, timeout_s: float = 30.0) -> dict[str, str]:
    """Test and diagnosis only: what a parser child sees (:func:`confine.observe`),
    forked like one and in its place, of this process and of 127.0.0.1:``port``."""
    ours, theirs = socket.socketpair()
    with ours:
        try:
            _ForkServer.get().submit(theirs, timeout_s, {"worker_pid": os.getpid(), "port": port})
        finally:
            theirs.close()
        received = _receive(ours, time.monotonic() + timeout_s, timeout_s, None)
    assert isinstance(received, bytearray)  # nothing is spooled without spool_above
    status, body, verdict = _split(received)
    if status != b"OK":
        raise RetryableError(f"parse: the sandbox probe failed ({verdict.decode() or 'no reply'})")
    facts: dict[str, str] = json.loads(body.tobytes())
    return facts


def _send(conn: socket.socket, header: bytes, data: bytes | ByteSource, deadline: float) -> None:
    try:
        conn.settimeout(max(0.001, deadline - time.monotonic()))
        conn.sendall(header)
        if isinstance(data, bytes):
            conn.sendall(data)
        else:
            for piece in data:
                conn.settimeout(max(0.001, deadline - time.monotonic()))
                conn.sendall(piece)
        conn.shutdown(socket.SHUT_WR)
    except TimeoutError:
        pass  # the reply, or the fork server's verdict, says what happened
    except OSError:
        pass  # the child died before reading everything: likewise


def _receive(
    conn: socket.socket, deadline: float, timeout_s: float, spool_above: int | None
) -> bytearray | SpooledPayload:
    """Everything up to end-of-file: in memory, or spooled when the reply is OK and large."""
    received = bytearray()  # grown in place: a large reply is not held twice to be joined
    pieces = _pieces(conn, deadline, timeout_s)
    undecided = spool_above is not None
    for piece in pieces:
        received += piece
        if undecided and spool_above is not None:
            newline = received.find(b"\n", 0, 64)
            if newline < 0 and len(received) < 64:
                continue
            undecided = False
            status, _, size = bytes(received[: max(newline, 0)]).partition(b" ")
            if status == b"OK" and size.isdigit() and int(size) > spool_above:
                return _spool(received, newline + 1, int(size), pieces)
    return received


def _pieces(conn: socket.socket, deadline: float, timeout_s: float) -> Iterator[bytes]:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ParserLimitExceeded(_timeout_message(timeout_s))
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(_RECV_CHUNK)
        except TimeoutError:
            raise ParserLimitExceeded(_timeout_message(timeout_s)) from None
        except OSError:
            return
        if not chunk:
            return
        yield chunk


def _spool(
    received: bytearray, body_start: int, size: int, pieces: Iterator[bytes]
) -> bytearray | SpooledPayload:
    """An OK reply of ``size`` bytes from ``body_start`` on: its JSON goes to a file.

    An incomplete reply comes back as what was received, for :func:`_decode`.
    """
    body_end = body_start + size
    limit = min(body_end, body_start + _MAX_SUMMARY)
    while (summary_end := received.find(b"\n", body_start, limit)) < 0:
        if len(received) >= limit:
            raise RetryableError("parse: the parser sandbox sent a reply without a summary")
        piece = next(pieces, None)
        if piece is None:
            return received
        received += piece
    summary = bytes(received[body_start:summary_end])
    file = tempfile.TemporaryFile()  # noqa: SIM115 - returned open, its owner closes it
    try:
        with memoryview(received) as view:
            file.write(view[summary_end + 1 : body_end])
        missing = body_end - len(received)
        del received[summary_end + 1 :]
        for piece in pieces:  # to the end: the fork server's verdict follows, unused
            if missing > 0:
                file.write(memoryview(piece)[:missing])
                missing -= len(piece)
        if missing > 0:
            file.close()
            return received
        file.flush()
    except BaseException:
        file.close()
        raise
    return SpooledPayload.from_summary(summary, file, body_end - summary_end - 1)


def _decode(received: bytearray, timeout_s: float, memory_mb: int, elapsed: float) -> ParsedPayload:
    status, body, verdict = _split(received)
    if status == b"OK":
        summary_end = _find_newline(body)
        summary, payload = body[:summary_end].tobytes(), body[summary_end + 1 :].tobytes()
        body.release()
        return ParsedPayload.from_summary(summary, payload)
    if status == b"ERR":
        payload = json.loads(body.tobytes())
        raise _ERRORS.get(payload["error_class"], CorruptDocument)(payload["message"])
    how, _, value = verdict.partition(b" ")
    if how == b"timeout" or (how == b"signal" and value == b"%d" % signal.SIGALRM):
        raise ParserLimitExceeded(_timeout_message(timeout_s))
    if how == b"signal":
        # Killed: SIGKILL from the OOM killer, or an abort or a crash in C code
        # that could not get memory under the address-space limit.
        name = _signal_name(int(value))
        log.warning("parser process died: %s", name)
        raise ParserLimitExceeded(f"{memory_message(memory_mb)} (parser process died: {name})")
    if how == b"code" and value != b"0":
        # An error escaped even the child's error handling: in practice a
        # MemoryError while reporting another one.
        log.warning("parser process exited with code %s without replying", value.decode())
        raise ParserLimitExceeded(
            f"{memory_message(memory_mb)} (parser process exited with code {value.decode()})"
        )
    if not verdict and elapsed >= timeout_s:
        raise ParserLimitExceeded(_timeout_message(timeout_s))  # verdict lost with the child
    _ForkServer.check()
    raise RetryableError(f"parse: the parser sandbox failed ({verdict.decode() or 'no reply'})")


def _find_newline(view: memoryview) -> int:
    """Index of the first newline in ``view``, looking at the start only (the summary line)."""
    head = view[:65536].tobytes()
    index = head.find(b"\n")
    if index < 0:
        raise RetryableError("parse: the parser sandbox sent a reply without a summary")
    return index


def _split(received: bytearray) -> tuple[bytes, memoryview, bytes]:
    """``(status, body, verdict)``: the child's reply, if complete, and the fork server's.

    The body is a view into ``received``, not a copy of it.
    """
    view = memoryview(received)
    status, body, rest = b"", view[:0], None
    newline = received.find(b"\n", 0, 64)
    parts = bytes(received[:newline]).split(b" ") if newline >= 0 else []
    if len(parts) == 2 and parts[0] in (b"OK", b"ERR") and parts[1].isdigit():
        size = int(parts[1])
        after = newline + 1
        if len(received) - after >= size:
            status, body = parts[0], view[after : after + size]
            rest = bytes(view[after + size :])
    if rest is None:  # no complete reply: what came is the fork server's verdict, if anything
        rest = bytes(received)
    verdict = b""
    if rest.startswith(b"EXIT "):
        verdict = rest[5:].split(b"\n", 1)[0]
    return status, body, verdict


def _timeout_message(timeout_s: float) -> str:
    return f"parse: parser timed out after {timeout_s:g} s"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _ForkServer:
    """The running fork server of this process, started on first use."""

    _lock = threading.Lock()
    _current: _ForkServer | None = None

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._owner = os.getpid()
        self._control = ours
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ragstream.parsing.zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=_child_env(),
                start_new_session=True,  # a terminal's Ctrl-C is ours to handle
            )
        except OSError as exc:
            ours.close()
            raise RetryableError(f"parse: cannot start the parser sandbox: {exc}") from exc
        finally:
            theirs.close()
        ours.settimeout(_START_TIMEOUT_S)
        try:
            ready = ours.recv(4096)
        except OSError:
            ready = b""
        word, _, held = ready.partition(b" ")
        if word != b"READY":
            self.close()
            raise RetryableError("parse: the parser sandbox failed to start (see its log)")
        ours.settimeout(None)
        # What keeps its parsers from our secrets and the network (see confine).
        self.confinement: list[str] = json.loads(held or b"[]")
        _log_confinement(self.confinement)
        if not any(layer.startswith("Landlock") for layer in self.confinement):
            # Nothing keeps the parsers out of our /proc entries (our environment and
            # memory, secrets included) but this.
            with contextlib.suppress(OSError):
                keep_children_out()

    @classmethod
    def get(cls) -> _ForkServer:
        with cls._lock:
            server = cls._current
            if server is None or not server._usable():
                if server is not None:
                    server.close()
                server = cls._current = cls()
            return server

    @classmethod
    def check(cls) -> None:
        """Forget a fork server that has died, so that the next parse starts a new one."""
        with cls._lock:
            if cls._current is not None and not cls._current._usable():
                cls._current.close()
                cls._current = None

    @classmethod
    def discard(cls) -> None:
        with cls._lock:
            if cls._current is not None:
                cls._current.close()
                cls._current = None

    def submit(
        self, conn: socket.socket, timeout_s: float, probe: dict[str, int] | None = None
    ) -> None:
        """Hand one end of a request socket to the fork server."""
        request: dict[str, object] = {"timeout_s": timeout_s}
        if probe is not None:
            request["probe"] = probe
        message = json.dumps(request).encode("utf-8")
        try:
            with self._lock:
                socket.send_fds(self._control, [message], [conn.fileno()])
        except OSError as exc:
            self.discard()
            raise RetryableError(f"parse: the parser sandbox is gone: {exc}") from exc

    def _usable(self) -> bool:
        # After a fork the control socket is shared with the parent; start our own.
        return self._owner == os.getpid() and self._process.poll() is None

    def close(self) -> None:
        self._control.close()  # the fork server exits on end-of-file
        if self._owner != os.getpid():
            return
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@atexit.register
def _stop_fork_server() -> None:
    with contextlib.suppress(Exception):
        _ForkServer.discard()


def _forget_fork_server() -> None:
    """In a forked copy of this process: start afresh, leave the parent's server alone."""
    _ForkServer._lock = threading.Lock()  # another thread may have held it at fork time
    server, _ForkServer._current = _ForkServer._current, None
    if server is not None:
        server._control.close()  # our copy only; the parent's stays open


os.register_at_fork(after_in_child=_forget_fork_server)


def _package_root() -> str:
    import ragstream

    return os.path.dirname(os.path.dirname(os.path.realpath(ragstream.__file__)))


def _log_confinement(held: list[str]) -> None:
    log.info("parser sandbox: scrubbed environment; %s", "; ".join(held) or "nothing more")
    if not any(layer.startswith(("seccomp", "network namespace")) for layer in held):
        log.warning(
            "parser sandbox: parsers can open network connections (neither a seccomp filter "
            "nor a network namespace could be set up)"
        )


def _child_env() -> dict[str, str]:
    """The fork server's environment: the allow-list of :func:`confine.scrubbed_environ`
    (no secret of ours), with our package importable however it was installed."""
    env = scrubbed_environ(os.environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _package_root() + (os.pathsep + existing if existing else "")
    return env
