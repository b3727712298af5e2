"""PDF to blocks with pypdfium2 (PDFium; Apache-2.0 / BSD-3-Clause).

Pages are opened, read and closed one at a time, so memory stays bounded by
one page plus the blocks produced so far. PDF text carries no paragraph
marks, so paragraphs are recovered from line geometry: a vertical gap clearly
larger than the page's usual line pitch, or a change of font size, starts a
new one. Short lines set clearly larger than the body text become headings.
A page with no text layer (a scan) is rendered at 300 dpi and read by OCR
(:mod:`ragstream.parsing.ocr`); only such pages pay for it. Ruled tables
become table blocks at their place on the page (:mod:`ragstream.parsing.pdftables`);
only pages whose drawing could be a grid pay for looking.
"""

from __future__ import annotations

import ctypes
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing import ocr
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.pdftables import PageTable, TableFinder
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
        last = min(last, page_count)
        finder = TableFinder(data, last)
        scanned = 0
        try:
            for index in range(max(first, 1) - 1, last):
                lines = _read_page(document, index, finder)
                if not lines:
                    scanned += 1
                    ocr.emit(builder, _ocr_page(document, index), page=index + 1)
                    continue
                for line in lines:
                    if isinstance(line, _Line) and line.size > 0:
                        sizes[_bucket(line.size)] += len(line.text)
                body = sizes.most_common(1)[0][0] if sizes else 0.0
                for paragraph in _paragraphs(lines):
                    if isinstance(paragraph, PageTable):
                        builder.table(paragraph.rows, page=index + 1)
                    else:
                        _emit(builder, paragraph, body, page=index + 1)
        finally:
            finder.close()
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


_Item = _Line | None | PageTable


def _read_page(document: pdfium.PdfDocument, index: int, finder: TableFinder) -> list[_Item]:
    """The page's lines in reading order; None stands for a blank line, a table for its
    lines (placed where its first character came in PDFium's order)."""
    try:
        page = document[index]
    except pdfium.PdfiumError:
        raise CorruptDocument(f"{_CORRUPT}: page {index + 1} cannot be read") from None
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_range()
            if not text.strip():
                return []
            return _lines(textpage, text, finder.find(page, textpage, index))
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


def _lines(
    textpage: pdfium.PdfTextPage, text: str, tables: Sequence[PageTable] = ()
) -> list[_Item]:
    """The page's lines, and its tables in their place (their characters left out)."""
    astral = not text.isascii() and len(text.encode("utf-16-le")) // 2 != len(text)
    owner = {char: table for table in tables for char in table.chars}
    placed: set[int] = set()
    lines: list[_Item] = []
    offset = 0  # in UTF-16 code units, PDFium's text index
    for raw in text.split("\n"):
        width = len(raw.encode("utf-16-le")) // 2 if astral else len(raw)
        if owner:
            content, lead, hit, table_first = _outside_tables(textpage, raw, offset, owner)
            new = [t for t in hit if id(t) not in placed]
            placed.update(id(t) for t in new)
            if table_first:
                lines.extend(new)
        else:
            content = raw.translate(_CONTROLS).strip()
            lead = offset + len(raw) - len(raw.lstrip())
            new, table_first = [], True
        lines.append(_line(textpage, content, lead) if content else None)
        if not table_first:
            lines.extend(new)
        offset += width + 1
    lines.extend(t for t in tables if id(t) not in placed)  # never met in the text
    return _lift_above_tables(lines) if tables else lines


def _lift_above_tables(lines: list[_Item]) -> list[_Item]:
    """Content order may draw a table before the title above it (a spreadsheet's
    export does): lines right after a table that stand above its top go before it."""
    out: list[_Item] = []
    i = 0
    while i < len(lines):
        item = lines[i]
        i += 1
        if not isinstance(item, PageTable):
            out.append(item)
            continue
        end = i
        while end < len(lines):
            after = lines[end]
            if after is None:
                end += 1
            elif isinstance(after, _Line) and after.baseline > item.top:
                end += 1  # NaN compares false: a line of unknown place stays
            else:
                break
        while end > i and lines[end - 1] is None:
            end -= 1
        out.extend(lines[i:end])
        out.append(item)
        i = end
    return out


def _line(textpage: pdfium.PdfTextPage, content: str, text_index: int) -> _Line:
    """A line with the size and baseline of its first character (``text_index``)."""
    x, y = ctypes.c_double(), ctypes.c_double()
    char = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, text_index)
    size, baseline = 0.0, math.nan
    if char >= 0:
        size = float(pdfium_c.FPDFText_GetFontSize(textpage, char))
        if pdfium_c.FPDFText_GetCharOrigin(textpage, char, ctypes.byref(x), ctypes.byref(y)):
            baseline = y.value
    return _Line(content, size, baseline)


def _outside_tables(
    textpage: pdfium.PdfTextPage, raw: str, offset: int, owner: dict[int, PageTable]
) -> tuple[str, int, list[PageTable], bool]:
    """One line of a page with tables: its text outside them, the text index of its
    first character kept, the tables it touches in order, and whether a table came
    before any kept text (then the tables go before the line, else after it)."""
    kept: list[str] = []
    hit: list[PageTable] = []
    lead = -1
    table_first = False
    position = offset
    for ch in raw:
        char = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, position)
        table = owner.get(char) if char >= 0 else None
        if table is not None:
            if not hit:
                table_first = lead < 0
            if all(t is not table for t in hit):
                hit.append(table)
            kept.append(" ")
        else:
            if lead < 0 and ch.isprintable() and not ch.isspace():
                lead = position
            kept.append(ch)
        position += 2 if ord(ch) > 0xFFFF else 1
    content = " ".join("".join(kept).translate(_CONTROLS).split())
    return content, max(lead, offset), hit, table_first


def _bucket(size: float) -> float:
    return round(size * 2) / 2


def _paragraphs(lines: list[_Item]) -> list[list[_Line] | PageTable]:
    pitches = _line_pitches(lines)
    paragraphs: list[list[_Line] | PageTable] = []
    current: list[_Line] = []
    for line in lines:
        if not isinstance(line, _Line):
            if current:
                paragraphs.append(current)
                current = []
            if line is not None:
                paragraphs.append(line)
            continue
        if current and _starts_paragraph(current[-1], line, pitches):
            paragraphs.append(current)
            current = []
        current.append(line)
    if current:
        paragraphs.append(current)
    return paragraphs


def _line_pitches(lines: list[_Item]) -> dict[float, float]:
    """The usual baseline distance between consecutive lines, per font size."""
    gaps: dict[float, Counter[float]] = {}
    previous: _Line | None = None
    for line in lines:
        if isinstance(line, _Line) and previous is not None and _same_size(previous, line):
            gap = previous.baseline - line.baseline
            if gap > 0.5 * line.size:
                gaps.setdefault(_bucket(line.size), Counter())[_bucket(gap)] += 1
        previous = line if isinstance(line, _Line) else None
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
