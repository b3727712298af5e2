"""Legacy Word (.doc, Word 97-2003) through Debian's ``antiword``, run as a program.

antiword needs a seekable file, and the sandbox writes no files: the bytes go into an
anonymous memory file passed to the child as a descriptor. Without antiword the
document is refused with the fix in the message.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument, ParserLimitExceeded, UnsupportedDocument
from ragstream.parsing.text import parse_text

DOC = "application/msword"
PARSER = "antiword"
PARSER_VERSION = "antiword/0.37"
TIMEOUT_S = 30.0
NOT_INSTALLED = (
    "unsupported document type (a legacy Word .doc file, and antiword is not installed); "
    "save it as .docx"
)


def parse_doc(data: bytes) -> ParsedDocument:
    binary = shutil.which("antiword")
    if binary is None:
        raise UnsupportedDocument(NOT_INSTALLED)
    fd = os.memfd_create("document.doc")
    try:
        os.write(fd, data)
        result = subprocess.run(
            [binary, "-w", "0", "-m", "UTF-8.txt", f"/proc/self/fd/{fd}"],
            pass_fds=(fd,),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ParserLimitExceeded(f"parse: antiword took longer than {TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise UnsupportedDocument(f"{NOT_INSTALLED} ({exc})") from None
    finally:
        os.close(fd)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().replace(f"/proc/self/fd/{fd}", "")
        raise CorruptDocument(f"DOC could not be read: {detail[:200] or 'antiword failed'}")
    plain = parse_text(result.stdout.decode("utf-8", "replace"))
    return ParsedDocument(
        blocks=plain.blocks, content_type=DOC, parser=PARSER, parser_version=PARSER_VERSION
    )
