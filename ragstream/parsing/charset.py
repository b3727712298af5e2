"""Turning the bytes of a text file into ``str``.

UTF-8 is by far the most common encoding and cheap to verify, so it is tried
first; byte-order marks are authoritative. Only when both fail is
charset-normalizer asked, on a bounded sample around the first non-UTF-8 byte
so that a large file costs no more to detect than a small one.
"""

from __future__ import annotations

import codecs

from ragstream.errors import UnsupportedDocument

# Longest prefixes first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_SAMPLE_BYTES = 64 * 1024
# charset-normalizer often ranks a Baltic or Central European code page just
# above Windows-1252 on short Western European text; Windows-1252 is by far
# the likelier encoding, so it wins when it is about as clean as the best.
_PREFERRED_SINGLE_BYTE = "cp1252"
_CHAOS_TOLERANCE = 0.1


def detect_bom(data: bytes) -> tuple[str, int] | None:
    """The encoding a byte-order mark announces, and the mark's length."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode a text document; returns ``(text, encoding)``."""
    bom = detect_bom(data)
    if bom is not None:
        encoding, skip = bom
        return data[skip:].decode(encoding, errors="replace"), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    encoding = _detect(_sample(data, first_bad))
    return data.decode(encoding, errors="replace"), encoding


def _sample(data: bytes, first_bad: int) -> bytes:
    """A bounded window of whole lines that contains the first non-UTF-8 byte."""
    if len(data) <= _SAMPLE_BYTES:
        return data
    start = max(0, first_bad - _SAMPLE_BYTES // 4)
    window = data[start : start + _SAMPLE_BYTES]
    if start > 0:
        newline = window.find(b"\n")
        if 0 <= newline < first_bad - start:
            window = window[newline + 1 :]
    last = window.rfind(b"\n")
    if last > len(window) // 2:
        window = window[: last + 1]
    return window


def _detect(sample: bytes) -> str:
    from charset_normalizer import from_bytes
    from charset_normalizer.utils import is_multi_byte_encoding

    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        raise UnsupportedDocument("unsupported document type (text in an unknown encoding)")
    if not is_multi_byte_encoding(best.encoding):
        for match in matches:
            if (
                match.encoding == _PREFERRED_SINGLE_BYTE
                and match.chaos <= best.chaos + _CHAOS_TOLERANCE
            ):
                return _PREFERRED_SINGLE_BYTE
    return str(best.encoding)
