"""Outlook messages (``.msg``, MS-OXMSG), read the way e-mail is (:mod:`ragstream.parsing.mail`):
the subject as a heading, From/To/Cc/Date, the body, then each attachment of a supported
type, an attached message parsed like the message itself, to the same depth.

A .msg is an OLE compound file, read here with olefile: one stream per property,
``__substg1.0_PPPPTTTT`` (property id, type), the fixed-length ones together in
``__properties_version1.0``; attachments and attached messages are storages laid out the
same way. A compound file holds nothing larger than itself, so the header's table sizes
and all the streams read from it, together, are held to its size: a hostile file that
points many entries at one run of sectors, or chains its sectors in a loop, fails as
corrupt instead of filling memory.
"""

from __future__ import annotations

import codecs
import io
import struct
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from importlib.metadata import version
from typing import Any

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.mail import MAX_DEPTH, MAX_PARTS, append_attachment, parse_attachment
from ragstream.parsing.sniff import MSG

PARSER = "msg"
CORRUPT = "MSG is corrupt or truncated"

# Property ids (MS-OXPROPS).
_SUBJECT = 0x0037
_CLIENT_SUBMIT_TIME = 0x0039
_SENT_REPRESENTING_NAME = 0x0042
_SENDER_NAME = 0x0C1A
_SENDER_EMAIL = 0x0C1F  # SMTP, or an Exchange (X.500) address
_SENDER_SMTP = 0x5D01
_DISPLAY_CC = 0x0E03
_DISPLAY_TO = 0x0E04
_BODY = 0x1000
_RTF_COMPRESSED = 0x1009
_HTML = 0x1013
_DISPLAY_NAME = 0x3001
_ATTACH_DATA = 0x3701
_ATTACH_FILENAME = 0x3704
_ATTACH_METHOD = 0x3705
_ATTACH_LONG_FILENAME = 0x3707
_INTERNET_CPID = 0x3FDE
_MESSAGE_CODEPAGE = 0x3FFD
# Property types.
_LONG, _SYSTIME, _STRING8, _UNICODE, _BINARY = 0x0003, 0x0040, 0x001E, 0x001F, 0x0102
_ATTACH_OLE = 6  # an OLE object, kept in the storage an attached message is kept in

_PROPERTIES = "__properties_version1.0"
_ATTACHMENT_PREFIX = "__attach_version1.0_#"
_EMBEDDED_MESSAGE = "__substg1.0_3701000D"
# What precedes the 16-byte entries of ``__properties_version1.0``, by kind of storage.
_MESSAGE_HEADER, _EMBEDDED_HEADER, _ATTACHMENT_HEADER = 32, 24, 8

_FALLBACK_CODEC = "cp1252"
# Code pages whose Python codec is not named cpNNNN.
_CODECS = {
    1200: "utf-16-le",
    20127: "ascii",
    20866: "koi8-r",
    21866: "koi8-u",
    50220: "iso2022-jp",
    51932: "euc-jp",
    52936: "hz",
    54936: "gb18030",
    65001: "utf-8",
    **{page: f"iso8859-{page - 28590}" for page in range(28591, 28606)},
}
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_HEADER_BYTES = 512
_SECTOR_SHIFTS = (9, 12)
# Header fields (MS-CFB 2.2): sector shift, then the FAT, mini FAT and DIFAT sector counts.
_SECTOR_SHIFT_AT, _FAT_SECTORS_AT, _MINI_FAT_SECTORS_AT, _DIFAT_SECTORS_AT = 0x1E, 0x2C, 0x40, 0x48
# olefile reports damage with these; none of them may escape as anything but corruption.
_READ_ERRORS = (
    OSError,
    struct.error,
    IndexError,
    KeyError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)

# Compressed RTF (MS-OXRTFCP): LZ77 over a 4 KiB window that starts with this text.
_RTF_PREBUFFER = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern "
    b"\\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0"
    b"\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_RTF_WINDOW = 4096
_RTF_COMPRESSED_MAGIC = 0x75465A4C  # "LZFu"
_RTF_UNCOMPRESSED_MAGIC = 0x414C454D  # "MELA"
_RTF_HEADER = 16
MAX_RTF_BYTES = 64 * 1024 * 1024  # as much as one member of a ZIP-packaged document


@cache
def parser_version() -> str:
    return f"olefile/{version('olefile')}"


def parse_msg(data: bytes, depth: int = 0) -> ParsedDocument:
    return _parse_message(_CompoundFile(data).root(), depth, _FALLBACK_CODEC)


def _parse_message(message: _Storage, depth: int, codec: str) -> ParsedDocument:
    """One message, the file's own or an attached one; 8-bit strings are in its code
    page, else in that of the message it is attached to."""
    codec = _codec(message) or codec
    builder = BlockBuilder()
    subject = message.text(_SUBJECT, codec).strip() or "(no subject)"
    builder.heading(subject, 1)
    header = [f"{key}: {value}" for key, value in _header(message, codec) if value]
    if header:
        builder.paragraph("\n".join(header))
    for paragraph in _body(message, codec):
        builder.paragraph(paragraph)
    _attachments(message, builder, depth, codec)
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=MSG,
        parser=PARSER,
        parser_version=parser_version(),
        metadata={"title": subject},
    )


def _header(message: _Storage, codec: str) -> list[tuple[str, str]]:
    name = message.text(_SENDER_NAME, codec) or message.text(_SENT_REPRESENTING_NAME, codec)
    address = message.text(_SENDER_SMTP, codec)
    if not address:
        stored = message.text(_SENDER_EMAIL, codec)
        address = stored if "@" in stored else ""  # an Exchange address says nothing to a reader
    sender = f"{name} <{address}>" if name and address and name != address else name or address
    sent = message.time(_CLIENT_SUBMIT_TIME)
    return [
        ("From", sender),
        ("To", message.text(_DISPLAY_TO, codec)),
        ("Cc", message.text(_DISPLAY_CC, codec)),
        ("Date", format_datetime(sent) if sent is not None else ""),
    ]


def _body(message: _Storage, codec: str) -> list[str]:
    """The plain-text body; Outlook may keep only the HTML or only the RTF rendering."""
    from ragstream.parsing.html import parse_html
    from ragstream.parsing.rtf import parse_rtf

    plain = message.text(_BODY, codec)
    if plain.strip():
        return plain.replace("\r\n", "\n").split("\n\n")
    html = message.binary(_HTML)
    if html is None and (text := message.text(_HTML, codec)):
        html = codecs.BOM_UTF8 + text.encode("utf-8")  # outranks the charset the HTML declares
    if html:
        return [block.text for block in parse_html(html).blocks]
    rtf = message.binary(_RTF_COMPRESSED)
    if rtf:
        return [block.text for block in parse_rtf(decompress_rtf(rtf)).blocks]
    return []


def _attachments(message: _Storage, builder: BlockBuilder, depth: int, codec: str) -> None:
    names = [name for name in message.names() if name.lower().startswith(_ATTACHMENT_PREFIX)]
    if len(names) > MAX_PARTS:
        raise CorruptDocument(f"MSG has more than {MAX_PARTS} attachments")
    for name in names:
        attachment = message.storage(name, _ATTACHMENT_HEADER)
        if attachment is None:
            continue
        if depth >= MAX_DEPTH:
            raise CorruptDocument(f"MSG attachments are nested deeper than {MAX_DEPTH}")
        filename = attachment.text(_ATTACH_LONG_FILENAME, codec) or attachment.text(
            _ATTACH_FILENAME, codec
        )
        label = filename or attachment.text(_DISPLAY_NAME, codec)
        embedded = attachment.storage(_EMBEDDED_MESSAGE, _EMBEDDED_HEADER)
        attached: ParsedDocument | None = None
        if embedded is not None:
            if attachment.long(_ATTACH_METHOD) != _ATTACH_OLE:
                attached = _parse_message(embedded, depth + 1, codec)  # too deep fails it all
        elif data := attachment.binary(_ATTACH_DATA):
            attached = parse_attachment(data, filename or None, depth)
        if attached is not None:
            append_attachment(builder, label or attached.content_type, attached)


def _codec(message: _Storage) -> str | None:
    """The Python codec of the message's code page, when it names one Python knows."""
    page = message.long(_MESSAGE_CODEPAGE) or message.long(_INTERNET_CPID)
    if not page:
        return None
    name = _CODECS.get(page, f"cp{page}")
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name


def decompress_rtf(data: bytes) -> bytes:
    """The RTF body Outlook stores compressed (MS-OXRTFCP), up to the size its header
    declares; a two-byte reference gives at most 17 bytes, so the input bounds it too."""
    try:
        compressed_size, raw_size, magic, _crc = struct.unpack_from("<IIII", data, 0)
    except struct.error:
        raise CorruptDocument(f"{CORRUPT}: its RTF body is cut short") from None
    if raw_size > MAX_RTF_BYTES:
        raise CorruptDocument(f"MSG RTF body is larger than {MAX_RTF_BYTES // 2**20} MiB")
    if magic == _RTF_UNCOMPRESSED_MAGIC:
        return data[_RTF_HEADER : _RTF_HEADER + raw_size]
    if magic != _RTF_COMPRESSED_MAGIC:
        raise CorruptDocument(f"{CORRUPT}: its RTF body is of no known compression")
    window = bytearray(_RTF_PREBUFFER.ljust(_RTF_WINDOW, b"\x00"))
    write = len(_RTF_PREBUFFER)
    out = bytearray()
    at = _RTF_HEADER
    end = min(len(data), compressed_size + 4)  # the size counts from after its own field
    while at < end and len(out) < raw_size:
        control = data[at]
        at += 1
        for bit in range(8):
            if at >= end:
                break
            if not control & (1 << bit):
                out.append(data[at])
                window[write] = data[at]
                write = (write + 1) % _RTF_WINDOW
                at += 1
                continue
            if at + 2 > end:
                raise CorruptDocument(f"{CORRUPT}: its RTF body is cut short")
            reference = (data[at] << 8) | data[at + 1]
            at += 2
            offset, length = reference >> 4, (reference & 0xF) + 2
            if offset == write:
                return bytes(out[:raw_size])  # the end marker
            for i in range(length):
                byte = window[(offset + i) % _RTF_WINDOW]
                out.append(byte)
                window[write] = byte
                write = (write + 1) % _RTF_WINDOW
    return bytes(out[:raw_size])


def _check_header(data: bytes) -> None:
    """The header's table sizes, held to the file's before olefile trusts them: a sector
    count in the billions has it read a chain of sectors that loops, into memory."""
    if len(data) < _HEADER_BYTES:
        raise CorruptDocument(f"{CORRUPT}: shorter than its header")
    shift = struct.unpack_from("<H", data, _SECTOR_SHIFT_AT)[0]
    if shift not in _SECTOR_SHIFTS:
        raise CorruptDocument(f"{CORRUPT}: a sector size of 2^{shift} bytes")
    sectors = len(data) >> shift
    for what, at in (
        ("FAT", _FAT_SECTORS_AT),
        ("mini FAT", _MINI_FAT_SECTORS_AT),
        ("DIFAT", _DIFAT_SECTORS_AT),
    ):
        if struct.unpack_from("<I", data, at)[0] > sectors:
            raise CorruptDocument(f"{CORRUPT}: its {what} has more sectors than the file")


class _CompoundFile:
    """One compound file's storages, and its streams read only within the file's size."""

    def __init__(self, data: bytes) -> None:
        import olefile  # type: ignore[import-untyped]

        _check_header(data)
        self._budget = len(data)
        self._storage_type = olefile.STGTY_STORAGE
        try:
            self._ole: Any = olefile.OleFileIO(io.BytesIO(data))
            if self._ole.root.size > len(data):
                raise CorruptDocument(f"{CORRUPT}: its mini stream is larger than the file")
            # Each storage's entries by lower-case name: the format ignores case.
            self._entries: dict[tuple[str, ...], dict[str, str]] = {(): {}}
            for path in self._ole.listdir(streams=True, storages=True):
                self._entries.setdefault(tuple(path[:-1]), {})[path[-1].lower()] = path[-1]
        except _READ_ERRORS as exc:
            raise _corrupt(exc) from None

    def root(self) -> _Storage:
        return _Storage(self, (), _MESSAGE_HEADER)

    def entries(self, path: tuple[str, ...]) -> dict[str, str]:
        return self._entries.get(path, {})

    def is_storage(self, path: tuple[str, ...]) -> bool:
        try:
            return bool(self._ole.get_type(list(path)) == self._storage_type)
        except _READ_ERRORS as exc:
            raise _corrupt(exc) from None

    def read(self, path: tuple[str, ...]) -> bytes:
        """A stream's bytes, all of them: a stream cut short is a file cut short."""
        try:
            size = int(self._ole.get_size(list(path)))
            if size > self._budget:
                raise CorruptDocument(f"{CORRUPT}: its streams add up to more than the file")
            data = bytes(self._ole.openstream(list(path)).read())
        except _READ_ERRORS as exc:
            raise _corrupt(exc) from None
        if len(data) != size:
            raise CorruptDocument(f"{CORRUPT}: stream {'/'.join(path)} is cut short")
        self._budget -= size
        return data


class _Storage:
    """A message, an attachment or an attached message: its properties by id."""

    def __init__(self, file: _CompoundFile, path: tuple[str, ...], header: int) -> None:
        self._file = file
        self._path = path
        self._names = file.entries(path)
        self._header = header
        self._fixed: dict[int, tuple[int, bytes]] | None = None

    def names(self) -> list[str]:
        return sorted(self._names.values())

    def storage(self, name: str, header: int) -> _Storage | None:
        found = self._names.get(name.lower())
        if found is None or not self._file.is_storage((*self._path, found)):
            return None
        return _Storage(self._file, (*self._path, found), header)

    def stream(self, name: str) -> bytes | None:
        found = self._names.get(name.lower())
        return None if found is None else self._file.read((*self._path, found))

    def text(self, prop: int, codec: str) -> str:
        """A string property, stored as UTF-16 or as 8-bit text in the message's code page."""
        raw = self.stream(_stream_name(prop, _UNICODE))
        if raw is not None:
            return raw.decode("utf-16-le", "replace").rstrip("\x00")
        raw = self.stream(_stream_name(prop, _STRING8))
        return "" if raw is None else raw.decode(codec, "replace").rstrip("\x00")

    def binary(self, prop: int) -> bytes | None:
        return self.stream(_stream_name(prop, _BINARY))

    def long(self, prop: int) -> int | None:
        kind, value = self._fixed_properties().get(prop, (None, b""))
        return int(struct.unpack_from("<I", value)[0]) if kind == _LONG else None

    def time(self, prop: int) -> datetime | None:
        kind, value = self._fixed_properties().get(prop, (None, b""))
        if kind != _SYSTIME:
            return None
        ticks = struct.unpack_from("<Q", value)[0]  # 100 ns since 1601
        try:
            return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10) if ticks else None
        except OverflowError:
            return None

    def _fixed_properties(self) -> dict[int, tuple[int, bytes]]:
        """``__properties_version1.0``: per entry its type, id, flags and 8-byte value."""
        if self._fixed is None:
            raw = self.stream(_PROPERTIES) or b""
            self._fixed = {}
            for at in range(self._header, len(raw) - 15, 16):
                kind, prop = struct.unpack_from("<HH", raw, at)
                self._fixed[prop] = (kind, raw[at + 8 : at + 16])
        return self._fixed


def _stream_name(prop: int, kind: int) -> str:
    return f"__substg1.0_{prop:04X}{kind:04X}"


def _corrupt(exc: BaseException) -> CorruptDocument:
    return CorruptDocument(f"{CORRUPT}: {str(exc) or type(exc).__name__}")
