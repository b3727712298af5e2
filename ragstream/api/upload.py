"""Reading a multipart upload as it streams in, with the size limits enforced on the way.

The body is never held in memory whole: each file part goes to a spooled
temporary file (memory up to 1 MiB, disk after that), and the request is
refused with 413 the moment a declared ``Content-Length``, the bytes received
so far, or one file part passes its limit, before the rest is read.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

SPOOL_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 100
MAX_PART_HEADERS = 8
MAX_PART_HEADER_BYTES = 8 * 1024
FRAMING_ALLOWANCE_BYTES = 1024 * 1024
FILE_FIELDS = frozenset({"file", "files"})
TOO_MANY_HEADERS = f"a form part has more than {MAX_PART_HEADERS} headers"
HEADERS_TOO_LARGE = f"the headers of a form part are larger than {MAX_PART_HEADER_BYTES} bytes"


class UploadRejected(Exception):
    """The upload cannot be taken; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FilePart:
    filename: str | None
    spool: IO[bytes]
    size: int = 0

    def read(self) -> bytes:
        self.spool.seek(0)
        return self.spool.read()


@dataclass
class Form:
    files: list[FilePart] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for part in self.files:
            part.spool.close()


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)
    file: FilePart | None = None


class _Collector:
    """Callbacks of the streaming parser; errors are kept and raised between writes."""

    def __init__(self, form: Form, max_file_bytes: int, max_files: int) -> None:
        self.form = form
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.error: UploadRejected | None = None
        self.parts = 0
        self.ended = False
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_count = 0
        self._header_bytes = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def fail(self, status: int, message: str) -> None:
        if self.error is None:
            self.error = UploadRejected(status, message)

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            self.fail(400, f"more than {MAX_PARTS} parts in the form")
        self._part = _Part()
        self._headers = {}
        self._header_count = 0
        self._header_bytes = 0

    def _header_room(self, size: int) -> bool:
        """Counts ``size`` more bytes of the part's headers; False (and the 413) past the cap."""
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            self.fail(413, HEADERS_TOO_LARGE)
            return False
        return self.error is None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        if self._header_room(end - start):
            self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        if self._header_room(end - start):
            self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._header_count += 1
        if self._header_count > MAX_PART_HEADERS:
            self.fail(400, TOO_MANY_HEADERS)
        if self.error is None:
            self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        if self.error is not None:
            return
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition.lower() != b"form-data" or b"name" not in options:
            self.fail(400, "every form part needs Content-Disposition: form-data with a name")
            return
        part = self._part
        part.name = options[b"name"].decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        part.is_file = raw_filename is not None or part.name in FILE_FIELDS
        if part.is_file:
            if part.name not in FILE_FIELDS:
                self.fail(400, f"unexpected file field {part.name!r}; send files as 'file'")
                return
            if len(self.form.files) >= self.max_files:
                self.fail(413, f"more than {self.max_files} files in one request")
                return
            part.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - Form.close
            part.file = FilePart(part.filename, spool)
            self.form.files.append(part.file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        part = self._part
        chunk = data[start:end]
        if part.file is not None:
            part.file.size += len(chunk)
            if part.file.size > self.max_file_bytes:
                self.fail(
                    413,
                    f"file {part.filename or ''!r} is larger than the limit of "
                    f"{self.max_file_bytes} bytes",
                )
                return
            part.file.spool.write(chunk)
            return
        part.data += chunk
        if len(part.data) > MAX_FIELD_BYTES:
            self.fail(413, f"form field {part.name!r} is larger than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        part = self._part
        if self.error is None and not part.is_file and part.name:
            try:
                self.form.fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(400, f"form field {part.name!r} is not UTF-8")

    def on_end(self) -> None:
        self.ended = True


def _parser(boundary: bytes, collector: _Collector) -> MultipartParser:
    """The streaming parser, with its own part-header limits where it has them (>= 0.0.21)."""
    callbacks = collector.callbacks()
    try:
        return MultipartParser(
            boundary,
            callbacks,  # type: ignore[arg-type]
            max_header_count=MAX_PART_HEADERS,  # type: ignore[call-arg,unused-ignore]
            max_header_size=MAX_PART_HEADER_BYTES,  # type: ignore[call-arg,unused-ignore]
        )
    except TypeError:
        return MultipartParser(boundary, callbacks)  # type: ignore[arg-type]


def _parser_error(exc: Exception) -> UploadRejected:
    """The parser's error as the answer: its header limits are ours, said in our words."""
    said = str(exc).lower()
    if "header count" in said:
        return UploadRejected(400, TOO_MANY_HEADERS)
    if "header size" in said:
        return UploadRejected(413, HEADERS_TOO_LARGE)
    return UploadRejected(400, f"malformed multipart body: {exc}")


def request_limit(max_file_bytes: int, max_files: int) -> int:
    """The largest request body: every file at its limit, plus the form's framing and fields."""
    return max_file_bytes * max_files + FRAMING_ALLOWANCE_BYTES


async def read_form(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    max_file_bytes: int,
    max_files: int,
) -> Form:
    """Parse a ``multipart/form-data`` body from ``body``, refusing it as early as possible."""
    mime, options = parse_options_header(content_type)
    if mime.lower() != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRejected(415, "send the documents as multipart/form-data")
    limit = request_limit(max_file_bytes, max_files)
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadRejected(400, "Content-Length is not a number") from None
        if declared > limit:
            raise UploadRejected(413, f"request body of {declared} bytes is over the limit")
    form = Form()
    collector = _Collector(form, max_file_bytes, max_files)
    try:
        parser = _parser(options[b"boundary"], collector)
    except ValueError as exc:
        raise UploadRejected(400, f"bad multipart boundary: {exc}") from None
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise UploadRejected(413, f"request body is over the limit of {limit} bytes")
            try:
                parser.write(chunk)
            except Exception as exc:  # the parser's own errors: the body is not multipart
                raise collector.error or _parser_error(exc) from None
            if collector.error is not None:
                raise collector.error
        parser.finalize()
        if collector.error is not None:
            raise collector.error
        if not collector.ended:
            raise UploadRejected(400, "multipart body ends before its closing boundary")
    except BaseException:
        form.close()
        raise
    return form
