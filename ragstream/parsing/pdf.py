"""PDF to blocks with pypdfium2 (PDFium; Apache-2.0 / BSD-3-Clause).

Pages are opened, read and closed one at a time, so memory stays bounded by
one page plus the blocks produced so far. PDF text carries no paragraph
marks, so paragraphs are recovered from line geometry: a vertical gap clearly
larger than the page's usual line pitch, or a change of font size, starts a
new one. Short lines set clearly larger than the body text become headings.
A page with no text layer (a scan) is rendered at 300 dpi and read by OCR
(:mod:`ragstream.parsing.ocr`); only such pages pay for it.
"""

from __future__ import annotations

import ctypes
import math
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing import ocr
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.sniff import PDF

PARSER = "pypdfium2"

NO_TEXT = "no extractable text (scanned images?)"
ENCRYPTED = "PDF is encrypted"
_CORRUPT = "PDF is corrupt or truncated"

_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_FILE: "cannot be opened",
    pdfium_c.FPDF_ERR_FORMAT: "not a readable PDF structure",
}
# C0 controls PDFium may emit (e.g. \x02 for a line-end hyphen); tabs are kept.
_CONTROLS = {code: None for code in range(32) if code != 9}

_SAME_SIZE = 0.1  # relative font-size difference still counted as the same size
_PARAGRAPH_GAP = 1.3  # a gap this many line pitches apart starts a paragraph
_UNKNOWN_PITCH_GAP = 1.45  # in font sizes, when there are too few lines to learn the pitch
_HEADING_MIN_RATIO = 1.15
_HEADING_LEVELS = ((1.6, 1), (1.3, 2), (_HEADING_MIN_RATIO, 3))
_HEADING_MAX_CHARS = 200
_HEADING_MAX_LINES = 3


@dataclass(frozen=True)
class _Line:
    text: str
    size: float  # font size in points; 0 when unknown
    baseline: float  # y of the baseline (PDF y grows upwards); NaN when unknown


@cache
def parser_version() -> str:
    return f"pypdfium2/{version('pypdfium2')}+pdfium/{pdfium.PDFIUM_INFO.build}"


def parse_pdf(data: bytes, pages: tuple[int, int] | None = None) -> ParsedDocument:
    """Pages ``pages`` (first, last; 1-based, inclusive) only, when given: one part of a
    document parsed in parts. ``page_count`` is the whole document's either way, and a
    part without text is not an error (the document as a whole may have some)."""
    _check_complete(data)
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise CorruptDocument(ENCRYPTED) from None
        reason = _LOAD_ERRORS.get(exc.err_code, str(exc))
        raise CorruptDocument(f"{_CORRUPT}: {reason}") from None
    try:
        page_count = len(document)
        builder = BlockBuilder()
        sizes: Counter[float] = Counter()
        first, last = (1, page_count) if pages is None else pages
        scanned = 0
        for index in range(max(first, 1) - 1, min(last, page_count)):
            lines = _read_page(document, index)
            if not lines:
                scanned += 1
                ocr.emit(builder, _ocr_page(document, index), page=index + 1)
                continue
            for line in lines:
                if line is not None and line.size > 0:
                    sizes[_bucket(line.size)] += len(line.text)
            body = sizes.most_common(1)[0][0] if sizes else 0.0
            for paragraph in _paragraphs(lines):
                _emit(builder, paragraph, body, page=index + 1)
        title = _metadata_title(document)
    finally:
        document.close()
    if not len(builder) and pages is None:
        raise CorruptDocument(NO_TEXT)
    parser, version_ = (
        ocr.lineage(PARSER, parser_version()) if scanned else (PARSER, parser_version())
    )
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=PDF,
        parser=parser,
        parser_version=version_,
        page_count=page_count,
        metadata={"title": title} if title else {},
    )


def _check_complete(data: bytes) -> None:
    """A PDF cut short loses its trailer; PDFium would otherwise read what is left."""
    startxref = data.rfind(b"startxref")
    if startxref < 0 or data.find(b"%%EOF", startxref) < 0:
        raise CorruptDocument(f"{_CORRUPT}: no end-of-file trailer")


def _read_page(document: pdfium.PdfDocument, index: int) -> list[_Line | None]:
    """The page's lines in reading order; None stands for a blank line."""
    try:
        page = document[index]
    except pdfium.PdfiumError:
        raise CorruptDocument(f"{_CORRUPT}: page {index + 1} cannot be read") from None
    try:
        textpage = page.get_textpage()
        try:
            return _lines(textpage)
        finally:
            textpage.close()
    finally:
        page.close()


def _ocr_page(document: pdfium.PdfDocument, index: int) -> str:
    """The text OCR reads off the page rendered at the OCR resolution, in grey."""
    page = document[index]
    try:
        bitmap = page.render(scale=ocr.DPI / 72, grayscale=True)
        try:
            image = bitmap.to_pil()
        finally:
            bitmap.close()
    finally:
        page.close()
    image.info["dpi"] = (ocr.DPI, ocr.DPI)
    return ocr.read_image(image, page=index + 1)


def _lines(textpage: pdfium.PdfTextPage) -> list[_Line | None]:
    text = textpage.get_text_range()
    if not text.strip():
        return []
    astral = not text.isascii() and len(text.encode("utf-16-le")) // 2 != len(text)
    x, y = ctypes.c_double(), ctypes.c_double()
    lines: list[_Line | None] = []
    offset = 0  # in UTF-16 code units, PDFium's text index
    for raw in text.split("\n"):
        width = len(raw.encode("utf-16-le")) // 2 if astral else len(raw)
        content = raw.translate(_CONTROLS).strip()
        if not content:
            lines.append(None)
        else:
            lead = len(raw) - len(raw.lstrip())
            char = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, offset + lead)
            size, baseline = 0.0, math.nan
            if char >= 0:
                size = float(pdfium_c.FPDFText_GetFontSize(textpage, char))
                if pdfium_c.FPDFText_GetCharOrigin(
                    textpage, char, ctypes.byref(x), ctypes.byref(y)
                ):
                    baseline = y.value
            lines.append(_Line(content, size, baseline))
        offset += width + 1
    return lines


def _bucket(size: float) -> float:
    return round(size * 2) / 2


def _paragraphs(lines: list[_Line | None]) -> list[list[_Line]]:
    pitches = _line_pitches(lines)
    paragraphs: list[list[_Line]] = []
    current: list[_Line] = []
    for line in lines:
        if line is None:
            if current:
                paragraphs.append(current)
                current = []
            continue
        if current and _starts_paragraph(current[-1], line, pitches):
            paragraphs.append(current)
            current = []
        current.append(line)
    if current:
        paragraphs.append(current)
    return paragraphs


def _line_pitches(lines: list[_Line | None]) -> dict[float, float]:
    """The usual baseline distance between consecutive lines, per font size."""
    gaps: dict[float, Counter[float]] = {}
    previous: _Line | None = None
    for line in lines:
        if line is not None and previous is not None and _same_size(previous, line):
            gap = previous.baseline - line.baseline
            if gap > 0.5 * line.size:
                gaps.setdefault(_bucket(line.size), Counter())[_bucket(gap)] += 1
        previous = line
    pitches: dict[float, float] = {}
    for size, counter in gaps.items():
        pitch, count = counter.most_common(1)[0]
        if count >= 2:
            pitches[size] = pitch
    return pitches


def _same_size(a: _Line, b: _Line) -> bool:
    return a.size > 0 and b.size > 0 and abs(a.size - b.size) <= _SAME_SIZE * max(a.size, b.size)


def _starts_paragraph(previous: _Line, line: _Line, pitches: dict[float, float]) -> bool:
    if math.isnan(previous.baseline) or math.isnan(line.baseline) or line.size <= 0:
        return False
    if not _same_size(previous, line):
        return True
    gap = previous.baseline - line.baseline
    if gap < -0.5 * line.size:
        return True  # moved up the page: a new column or a float
    if gap <= 0.5 * line.size:
        return False  # same line: table cells, superscripts
    pitch = pitches.get(_bucket(line.size))
    if pitch is None:  # too few lines of this size to know their pitch
        return gap > _UNKNOWN_PITCH_GAP * line.size
    return gap > pitch * _PARAGRAPH_GAP


def _join(lines: list[_Line]) -> str:
    parts: list[str] = []
    for line in lines:
        if parts:
            last = parts[-1]
            if not (last.endswith("-") and len(last) > 1 and last[-2].isalpha()):
                parts.append(" ")
        parts.append(line.text)
    return "".join(parts)


def _emit(builder: BlockBuilder, lines: list[_Line], body: float, *, page: int) -> None:
    text = _join(lines)
    level = _heading_level(lines, text, body)
    if level:
        builder.heading(text, level, page=page)
    else:
        builder.paragraph(text, page=page)


def _heading_level(lines: list[_Line], text: str, body: float) -> int:
    size = lines[0].size
    if (
        body <= 0
        or size < body * _HEADING_MIN_RATIO
        or len(lines) > _HEADING_MAX_LINES
        or len(text) > _HEADING_MAX_CHARS
        or not any(char.isalpha() for char in text)
    ):
        return 0
    ratio = size / body
    for threshold, level in _HEADING_LEVELS:
        if ratio >= threshold:
            return level
    return 0


def _metadata_title(document: pdfium.PdfDocument) -> str:
    try:
        title = str(document.get_metadata_value("Title")).strip()
    except pdfium.PdfiumError:
        return ""
    return "" if title in ("(anonymous)", "untitled", "Untitled") else title
