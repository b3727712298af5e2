"""Legacy Word (.doc, Word 6-2003) through Debian's ``antiword``, run as a program.

antiword gets the bytes as an in-memory file (:mod:`ragstream.parsing.tool`). Without
antiword the document is refused with the fix in the message.

antiword refuses a document whose ``WordDocument`` stream is under 4 KiB (kept in
the compound file's mini stream, which it cannot read): short letters and forms,
and small files from Word for Mac or LibreOffice. Those are read here, with xlrd's
compound-file reader: the text is at most a few KiB, in one or a few pieces.
"""

from __future__ import annotations

import io
import re
import struct

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument, UnsupportedDocument
from ragstream.parsing.text import parse_text
from ragstream.parsing.tool import run_tool

DOC = "application/msword"
PARSER = "antiword"
PARSER_VERSION = "antiword/0.37"
TIMEOUT_S = 30.0
NOT_INSTALLED = (
    "unsupported document type (a legacy Word .doc file, and antiword is not installed); "
    "save it as .docx"
)


SMALL_PARSER = "doc-small"
SMALL_PARSER_VERSION = "1"
MIN_ANTIWORD_STREAM = 4096  # the compound file's mini-stream cutoff

_WORD_IDENTS = {0xA5EC, 0xA5DC, 0x8098, 0x8099, 0xA697, 0xA699}
_FIRST_WORD_97_FIB = 193
_F_COMPLEX, _F_ENCRYPTED, _F_WHICH_TABLE = 0x0004, 0x0100, 0x0200
# Word 6/95 text is 8-bit in the code page of the document's language (FIB lid).
_CODE_PAGES = {
    **dict.fromkeys((0x0402, 0x0419, 0x0422, 0x0423, 0x0C1A, 0x042F), "cp1251"),
    **dict.fromkeys((0x0405, 0x040E, 0x0415, 0x0418, 0x041A, 0x041B, 0x0424), "cp1250"),
    0x0408: "cp1253",
    0x041F: "cp1254",
    0x040D: "cp1255",
    0x0401: "cp1256",
    **dict.fromkeys((0x0425, 0x0426, 0x0427), "cp1257"),
}
# A field: \x13 code \x14 result \x15; its result is the text a reader sees.
_FIELD = re.compile("\x13[^\x13\x14\x15]*(?:\x14([^\x13\x14\x15]*))?\x15")
_MAX_FIELD_NESTING = 10
_SPECIAL = {
    "\r": "\n\n",  # paragraph end
    "\x07": "\t",  # table cell end
    "\x0b": "\n",  # line break
    "\x0c": "\n\n",  # page or section break
    "\x1e": "-",  # non-breaking hyphen
    "\x1f": "",  # optional hyphen
    "\xa0": " ",
}
_ANCHORS = {code: None for code in range(32) if chr(code) not in "\t\n"}


def parse_doc(data: bytes) -> ParsedDocument:
    small = _small_streams(data)
    if small is not None:
        return _parse_small(*small)
    out = run_tool(
        "antiword",
        ["-w", "0", "-m", "UTF-8.txt"],
        data,
        timeout_s=TIMEOUT_S,
        missing=NOT_INSTALLED,
        what="DOC",
    )
    plain = parse_text(out.decode("utf-8", "replace"))
    return ParsedDocument(
        blocks=plain.blocks, content_type=DOC, parser=PARSER, parser_version=PARSER_VERSION
    )


def _small_streams(data: bytes) -> tuple[bytes, bytes | None] | None:
    """``WordDocument`` and its table stream when the former is too small for antiword."""
    from xlrd.compdoc import CompDoc, CompDocError  # type: ignore[import-untyped]

    try:
        ole = CompDoc(data, logfile=io.StringIO())
        # The directory tells the size: a large document's stream is never read here.
        sizes = {node.name: node.tot_size for node in ole.dirlist if node.parent == 0}
        if not 0x20 <= sizes.get("WordDocument", MIN_ANTIWORD_STREAM) < MIN_ANTIWORD_STREAM:
            return None
        word = ole.get_named_stream("WordDocument")
        flags = struct.unpack_from("<H", word, 0x0A)[0]
        table = ole.get_named_stream("1Table" if flags & _F_WHICH_TABLE else "0Table")
    except (CompDocError, struct.error, LookupError, ValueError, TypeError, RecursionError):
        return None  # antiword says what is wrong with it
    return word, table


def _parse_small(word: bytes, table: bytes | None) -> ParsedDocument:
    cleaned = _small_text(word, table)
    for _ in range(_MAX_FIELD_NESTING):  # a field's result may hold fields: inside out
        cleaned, found = _FIELD.subn(lambda m: m.group(1) or "", cleaned)
        if not found:
            break
    for mark, replacement in _SPECIAL.items():
        cleaned = cleaned.replace(mark, replacement)
    plain = parse_text(cleaned.translate(_ANCHORS))
    return ParsedDocument(
        blocks=plain.blocks,
        content_type=DOC,
        parser=SMALL_PARSER,
        parser_version=SMALL_PARSER_VERSION,
    )


def _small_text(word: bytes, table: bytes | None) -> str:
    """The main text of a small Word document: Word 6/95 stores it as one run of 8-bit
    text, Word 97 and later as pieces listed in the table stream's piece table."""
    try:
        ident, fib = struct.unpack_from("<HH", word, 0)
        lid, _, flags = struct.unpack_from("<HHH", word, 0x06)
        if ident not in _WORD_IDENTS:
            raise CorruptDocument("DOC could not be read: no Word file information block")
        if flags & _F_ENCRYPTED:
            raise CorruptDocument("DOC is encrypted")
        if fib < 101:
            raise UnsupportedDocument(
                "unsupported document type (a Word document older than Word 6); save it as .docx"
            )
        if fib < _FIRST_WORD_97_FIB:
            if flags & _F_COMPLEX:
                raise CorruptDocument(
                    "DOC could not be read: a fast-saved Word 6/95 file; save it as .docx"
                )
            first, end = struct.unpack_from("<II", word, 0x18)
            length = struct.unpack_from("<i", word, 0x34)[0]
            raw = word[first : min(end, first + max(length, 0))]
            return raw.decode(_CODE_PAGES.get(lid, "cp1252"), "replace")
        length = struct.unpack_from("<i", word, 0x4C)[0]
        clx_at, clx_size = struct.unpack_from("<II", word, 0x01A2)
    except struct.error:
        raise CorruptDocument("DOC is corrupt: its file information block is cut short") from None
    if table is None:
        raise CorruptDocument("DOC is corrupt: its table stream is missing")
    return _pieces(word, table[clx_at : clx_at + clx_size])[: max(length, 0)]


def _pieces(word: bytes, clx: bytes) -> str:
    """The text the piece table (``Pcdt`` in the ``Clx``) points at, piece by piece:
    8-bit Windows-1252 when a piece's offset has bit 30 set, else UTF-16."""
    at = 0
    try:
        while clx[at] == 0x01:  # property modifiers, skipped
            at += 3 + struct.unpack_from("<H", clx, at + 1)[0]
        if clx[at] != 0x02:
            raise CorruptDocument("DOC is corrupt: no piece table")
        size = struct.unpack_from("<I", clx, at + 1)[0]
        plc = clx[at + 5 : at + 5 + size]
        count = (len(plc) - 4) // 12
        cps = struct.unpack_from(f"<{count + 1}I", plc, 0)
        parts: list[str] = []
        for i in range(count):
            fc = struct.unpack_from("<I", plc, 4 * (count + 1) + 8 * i + 2)[0]
            chars = max(cps[i + 1] - cps[i], 0)
            if fc & 0x40000000:
                start = (fc & 0x3FFFFFFF) // 2
                parts.append(word[start : start + chars].decode("cp1252", "replace"))
            else:
                parts.append(word[fc : fc + 2 * chars].decode("utf-16-le", "replace"))
    except (IndexError, struct.error):
        raise CorruptDocument("DOC is corrupt: its piece table is cut short") from None
    return "".join(parts)
