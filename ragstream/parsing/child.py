"""One sandboxed parse, in a process forked for this document alone.

Wire format on the request socket, parent to child: a JSON header line
(``filename``, ``memory_mb``, ``size``, optionally ``debug``) then ``size``
bytes of document. Child to parent: ``OK <n>\\n`` and ``n`` bytes of
:meth:`ParsedDocument.to_json`, or ``ERR <n>\\n`` and ``n`` bytes of JSON with
``error_class`` and ``message``. The address-space limit is set before the
document is read, so the input, the parse and the output all count.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
import traceback

from ragstream.errors import CorruptDocument, ParserLimitExceeded, PermanentError

MiB = 1024 * 1024
_MAX_HEADER = 64 * 1024
_MAX_MESSAGE = 500


def memory_message(memory_mb: int) -> str:
    return f"parser exceeded {memory_mb} MB memory limit"


def limit_memory(memory_mb: int) -> None:
    """Cap the address space, hard limit included, so parser code cannot lift it."""
    limit = memory_mb * MiB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve(conn: socket.socket) -> None:
    """Read one request from ``conn``, parse it, write the reply."""
    source = conn.makefile("rb")
    header = json.loads(source.readline(_MAX_HEADER))
    memory_mb = int(header["memory_mb"])
    limit_memory(memory_mb)
    try:
        body = _parse(source.read(int(header["size"])), header)
    except PermanentError as exc:
        _send(conn, b"ERR", _error(exc.error_class, exc.message))
    except MemoryError:
        _send(conn, b"ERR", _error(ParserLimitExceeded.__name__, memory_message(memory_mb)))
    except Exception as exc:
        # A parser library failing in a way nobody anticipated: as far as the
        # pipeline can tell the input is at fault, and retrying will not help.
        traceback.print_exc()
        message = f"could not parse document: {type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
        _send(conn, b"ERR", _error(CorruptDocument.__name__, message))
    else:
        _send(conn, b"OK", body)


def _parse(data: bytes, header: dict[str, object]) -> bytes:
    from ragstream.documents import ParsedPayload
    from ragstream.parsing.core import parse_bytes

    debug = header.get("debug")
    if isinstance(debug, str):
        _misbehave(debug)
    filename = header.get("filename")
    pages = header.get("pages")
    page_range = (int(pages[0]), int(pages[1])) if isinstance(pages, list) else None
    document = parse_bytes(data, filename if isinstance(filename, str) else None, page_range)
    parsed = ParsedPayload.of(document)
    return parsed.summary() + b"\n" + parsed.payload


def _misbehave(action: str) -> None:
    """Test-only: ``sleep:S`` hangs, ``alloc:MB`` allocates, ``die`` aborts the process."""
    name, _, argument = action.partition(":")
    if name == "sleep":
        time.sleep(float(argument))
    elif name == "alloc":
        hog = bytearray(int(argument) * MiB)
        del hog
    elif name == "die":
        os.abort()


def _error(error_class: str, message: str) -> bytes:
    return json.dumps({"error_class": error_class, "message": message}).encode("utf-8")


def _send(conn: socket.socket, status: bytes, body: bytes) -> None:
    conn.sendall(b"%s %d\n" % (status, len(body)))
    conn.sendall(body)
