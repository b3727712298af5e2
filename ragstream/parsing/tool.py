"""Debian's document tools (``antiword``, ``catppt``) run as programs by the sandboxed parser.

They need a seekable file and the sandbox writes no files: the bytes go into an
anonymous memory file passed to the child as a descriptor.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ragstream.errors import CorruptDocument, ParserLimitExceeded, UnsupportedDocument


def run_tool(
    name: str, args: list[str], data: bytes, *, timeout_s: float, missing: str, what: str
) -> bytes:
    """``name args <the bytes as a file>``'s standard output.

    Raises :class:`UnsupportedDocument` with ``missing`` when the tool is not installed,
    :class:`ParserLimitExceeded` past ``timeout_s``, :class:`CorruptDocument` naming
    ``what`` (e.g. "DOC") when it fails.
    """
    binary = shutil.which(name)
    if binary is None:
        raise UnsupportedDocument(missing)
    fd = os.memfd_create("document")
    path = f"/proc/self/fd/{fd}"
    try:
        os.write(fd, data)
        result = subprocess.run(
            [binary, *args, path],
            pass_fds=(fd,),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ParserLimitExceeded(f"parse: {name} took longer than {timeout_s:g} s") from None
    except OSError as exc:
        raise UnsupportedDocument(f"{missing} ({exc})") from None
    finally:
        os.close(fd)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().replace(path, "")
        raise CorruptDocument(f"{what} could not be read: {detail[:200] or name + ' failed'}")
    return result.stdout
