"""DOCX to blocks with python-docx.

A DOCX is a ZIP archive, and a ZIP can declare gigabytes of content in a few
kilobytes. The archive directory is checked before python-docx inflates
anything; the declared sizes can be trusted because :mod:`zipfile` never
returns more bytes than a member declares.

A document with no text at all but pictures (a scan saved as DOCX) is read by
OCR (:mod:`ragstream.parsing.ocr`), picture by picture.
"""

from __future__ import annotations

import io
import re
import zipfile
from functools import cache
from importlib.metadata import version

import docx
from docx.document import Document
from docx.opc.exceptions import PackageNotFoundError
from docx.styles.style import CharacterStyle
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph
from lxml.etree import LxmlError
from PIL import UnidentifiedImageError

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing import ocr
from ragstream.parsing.blocks import MAX_HEADING_LEVEL, BlockBuilder
from ragstream.parsing.sniff import DOCX

PARSER = "docx"

MiB = 1024 * 1024
MAX_TOTAL_UNCOMPRESSED = 512 * MiB
MAX_COMPRESSION_RATIO = 100
# Small members may be very repetitive without being dangerous.
RATIO_CHECK_MIN_SIZE = 1 * MiB
MAX_MEMBERS = 10_000

_TITLE = -1  # the "Title" style: above every heading level
_HEADING_STYLE = re.compile(r"heading\s*([1-9])", re.IGNORECASE)
_BODY_OUTLINE_LEVEL = 9
_STYLE_CHAIN_LIMIT = 10


@cache
def parser_version() -> str:
    return f"python-docx/{version('python-docx')}"


def check_zip(
    data: bytes,
    *,
    max_total: int = MAX_TOTAL_UNCOMPRESSED,
    max_ratio: float = MAX_COMPRESSION_RATIO,
    ratio_min_size: int = RATIO_CHECK_MIN_SIZE,
) -> None:
    """Refuse archives that would inflate far beyond what a document needs."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise CorruptDocument("DOCX is corrupt or truncated: not a readable ZIP archive") from None
    if len(members) > MAX_MEMBERS:
        raise CorruptDocument(f"DOCX is a zip bomb: {len(members)} archive members")
    total = sum(member.file_size for member in members)
    if total > max_total:
        raise CorruptDocument(
            f"DOCX is a zip bomb: {total / MiB:.0f} MiB uncompressed "
            f"(limit {max_total / MiB:.0f} MiB)"
        )
    for member in members:
        if member.file_size < ratio_min_size:
            continue
        ratio = member.file_size / max(member.compress_size, 1)
        if ratio > max_ratio:
            raise CorruptDocument(
                f"DOCX is a zip bomb: {member.filename} expands {ratio:.0f}x "
                f"(limit {max_ratio:.0f}x)"
            )


def parse_docx(data: bytes) -> ParsedDocument:
    check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except MemoryError:
        raise
    except (
        PackageNotFoundError,
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        LxmlError,
        OSError,
    ) as exc:
        raise CorruptDocument(f"DOCX is corrupt or truncated: {exc}") from None

    levels = _StyleLevels(uses_title=_uses_title(document))
    builder = BlockBuilder()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            builder.table(_rows(item))
            continue
        paragraph = item
        text = paragraph.text
        if not text.strip():
            continue
        level = levels.of(paragraph)
        if level:
            builder.heading(" ".join(text.split()), level)
        else:
            builder.paragraph(text)

    parser, version_ = PARSER, parser_version()
    if not len(builder):
        images = _images(document)
        for number, blob in enumerate(images, start=1):
            _read_image(builder, blob, number)
        if images:
            parser, version_ = ocr.lineage(PARSER, version_)
    title = (document.core_properties.title or "").strip()
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=DOCX,
        parser=parser,
        parser_version=version_,
        metadata={"title": title} if title else {},
    )


def _images(document: Document) -> list[bytes]:
    """The document's embedded pictures in reading order, each once."""
    rels = document.part.rels
    seen: set[str] = set()
    blobs: list[bytes] = []
    for rid in document.element.body.xpath(".//a:blip/@r:embed"):
        rel = rels.get(rid)
        if rid in seen or rel is None or rel.is_external or "image" not in rel.reltype:
            continue
        seen.add(rid)
        blobs.append(rel.target_part.blob)
    return blobs


def _read_image(builder: BlockBuilder, blob: bytes, number: int) -> None:
    """OCR of a picture of an image-only document; what Pillow cannot decode (EMF, WMF)
    is skipped, the document then failing for having no text."""
    try:
        text = ocr.read_bytes(blob, page=number)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return
    ocr.emit(builder, text, page=None)


def _rows(table: Table) -> list[list[str]]:
    """Cell texts per row; the first row is the header. A merged cell's text appears once,
    followed by empty cells for the other grid columns it spans, so columns stay aligned;
    a table nested in a cell is flattened into that cell's text."""
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        for tc in row._tr.tc_lst:
            cells.append(_cell_text(_Cell(tc, table)))
            cells.extend([""] * (max(tc.grid_span, 1) - 1))
        rows.append(cells)
    return rows


def _cell_text(cell: _Cell) -> str:
    parts: list[str] = []
    stack: list[Paragraph | Table | _Cell] = [cell]
    while stack:
        item = stack.pop()
        if isinstance(item, Paragraph):
            parts.append(item.text)
        elif isinstance(item, Table):
            cells = [_Cell(tc, item) for row in item.rows for tc in row._tr.tc_lst]
            stack.extend(reversed(cells))
        else:
            stack.extend(reversed(list(item.iter_inner_content())))
    return " ".join(part for part in parts if part.strip())


def _uses_title(document: Document) -> bool:
    for paragraph in document.paragraphs:
        style = paragraph.style
        if style is not None and style.name == "Title":
            return True
    return False


class _StyleLevels:
    """Heading level per paragraph, resolved once per style."""

    def __init__(self, *, uses_title: bool) -> None:
        # With a Title in the document, Heading 1 sits one level below it.
        self._shift = 1 if uses_title else 0
        self._by_style: dict[str | None, int] = {}

    def of(self, paragraph: Paragraph) -> int:
        direct = _outline_level(paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val"))
        if direct is not None:
            return self._level(direct)
        style_id = paragraph._p.style
        if style_id not in self._by_style:
            self._by_style[style_id] = self._level(_style_level(paragraph.style))
        return self._by_style[style_id]

    def _level(self, raw: int | None) -> int:
        if not raw:
            return 0
        if raw == _TITLE:
            return 1
        return min(raw + self._shift, MAX_HEADING_LEVEL)


def _style_level(style: CharacterStyle | None) -> int | None:
    """``Heading N`` and ``Title`` by name, else an outline level along the style chain."""
    if style is None:
        return None
    if style.name == "Title":
        return _TITLE
    match = _HEADING_STYLE.fullmatch(style.name or "")
    if match:
        return int(match.group(1))
    current: CharacterStyle | None = style
    for _ in range(_STYLE_CHAIN_LIMIT):
        if current is None:
            break
        level = _outline_level(current.element.xpath("./w:pPr/w:outlineLvl/@w:val"))
        if level is not None:
            return level or None
        current = current.base_style
    return None


def _outline_level(values: list[str]) -> int | None:
    """1-based level from a ``w:outlineLvl`` value; 0 for body text; None when absent."""
    if not values:
        return None
    try:
        raw = int(values[0])
    except ValueError:
        return None
    return 0 if raw >= _BODY_OUTLINE_LEVEL or raw < 0 else raw + 1
