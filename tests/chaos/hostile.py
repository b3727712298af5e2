"""Hostile and corrupt inputs, each with the outcome the pipeline owes it.

Every entry says what must happen to it: ``complete`` (a strange but valid
document), ``failed`` at a stage with an error class, or refused at submission.
The chaos accounting checks each against the database, so a parser that
starts accepting a bomb, or rejecting a valid file, fails the suite.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from functools import cache

from tests import corpus

MiB = 1024 * 1024


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    outcome: str  # complete | failed (in the pipeline) | refused (at submission)
    error_class: str | None = None  # for failed and refused: the class it must carry
    failed_stage: str = "parse"


def truncated_pdf(seed: int) -> bytes:
    whole = corpus.pdf(seed)
    return whole[: len(whole) // 2]


def deflate_zeros(size: int) -> bytes:
    """Raw deflate of ``size`` zero bytes: one fully flushed 16 MiB segment, repeated.

    A full flush leaves no reference across the segment boundary, so the copies
    decode one after the other; a final empty block ends the stream. This builds
    gigabytes of inflation in milliseconds instead of compressing them.
    """
    block = 16 * MiB
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = packer.compress(bytes(block)) + packer.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return segment * (size // block) + final


def zlib_zeros(size: int) -> bytes:
    """The zlib stream (a PDF's FlateDecode) of ``size`` zero bytes."""
    adler = ((size % 65521) << 16) | 1  # Adler-32 of zeros: A stays 1, B counts the bytes
    return b"\x78\xda" + deflate_zeros(size) + adler.to_bytes(4, "big")


@cache
def decompression_bomb_pdf(inflated_mb: int = 2048) -> bytes:
    """A one-page PDF whose 2 MiB content stream inflates to ``inflated_mb`` MiB."""
    stream = zlib_zeros(inflated_mb * MiB)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


@cache
def zip_bomb_docx(seed: int, inflated_mb: int = 64) -> bytes:
    """A real DOCX with one extra member that inflates a thousandfold."""
    source = zipfile.ZipFile(io.BytesIO(corpus.docx(seed)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for item in source.infolist():
            bomb.writestr(item, source.read(item.filename))
        bomb.writestr("word/media/filler.bin", bytes(inflated_mb * MiB))
    return out.getvalue()


def single_line_text(size: int = 10 * MiB) -> bytes:
    """``size`` bytes of words and no line break."""
    words = b"partition offset replica leader broker "
    return (words * (size // len(words) + 1))[:size]


def nested_html(depth: int = 60_000) -> bytes:
    page = "<html><body>" + "<div>" * depth + "<p>deep text at the bottom</p>" + "</div>" * depth
    return (page + "<h2>After</h2><p>the tail of the page</p></body></html>").encode()


def cp1252_text(seed: int) -> bytes:
    body = corpus.text(seed).decode()
    return ("Café, naïve façade: déjà vu à l'hôtel.\n\n" + body).encode("cp1252")


def png_named_text() -> bytes:
    # A GIF: PNG, JPEG and TIFF are read by OCR now, GIF is still refused.
    return b"GIF89a" + bytes(range(256)) * 8


def hostile_documents(seed: int = 0) -> list[Hostile]:
    """Every hostile input the suite submits, with what must become of it."""
    return [
        Hostile(f"h{seed}-truncated.pdf", truncated_pdf(seed + 1), "failed", "CorruptDocument"),
        Hostile(f"h{seed}-bomb.pdf", decompression_bomb_pdf(), "failed", "ParserLimitExceeded"),
        Hostile(f"h{seed}-bomb.docx", zip_bomb_docx(seed + 2), "failed", "CorruptDocument"),
        Hostile(f"h{seed}-one-line.txt", single_line_text(), "complete"),
        Hostile(f"h{seed}-nested.html", nested_html(), "complete"),
        Hostile(f"h{seed}-really-a-pdf.txt", corpus.pdf(seed + 3), "complete"),
        Hostile(f"h{seed}-really-html.docx", corpus.html(seed + 4), "complete"),
        Hostile(f"h{seed}-cp1252.txt", cp1252_text(seed + 5), "complete"),
        Hostile(f"h{seed}-image.txt", png_named_text(), "refused", "UnsupportedDocument"),
    ]
