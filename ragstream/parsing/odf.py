"""OpenDocument text, spreadsheet and presentation (ODT, ODS, ODP) from content.xml.

Repeated rows and columns (``number-rows-repeated``) are how a few bytes of
ODS describe a million empty cells; repetition counts are clamped and every
emitted cell counts against the per-sheet cap.
"""

from __future__ import annotations

from typing import Any

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.ooxml import MAX_SHEET_CELLS, MAX_SHEET_ROWS
from ragstream.parsing.safezip import SafeZip, local_name, text_of

ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"
KINDS = {ODT: "ODT", ODS: "ODS", ODP: "ODP"}
PARSER = "odf"
PARSER_VERSION = "1"

_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_PRES = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"


def _repeat(element: Any, attribute: str) -> int:
    try:
        return max(int(element.get(f"{{{_TABLE}}}{attribute}") or 1), 1)
    except ValueError:
        return 1


def _table_rows(table: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    cells = 0
    for row in table.iter(f"{{{_TABLE}}}table-row"):
        values: list[str] = []
        for cell in row:
            if local_name(cell) not in ("table-cell", "covered-table-cell"):
                continue
            text = " ".join(text_of(p) for p in cell.iter(f"{{{_TEXT}}}p"))
            repeat = _repeat(cell, "number-columns-repeated")
            if not text.strip():
                values.append("")  # trailing empty runs are dropped below
                values.extend([""] * min(repeat - 1, 1))
                continue
            cells += repeat
            if cells > MAX_SHEET_CELLS:
                raise CorruptDocument(f"table has more than {MAX_SHEET_CELLS} cells")
            values.extend([text] * repeat)
        while values and not values[-1]:
            values.pop()
        if not values:
            continue
        repeat = _repeat(row, "number-rows-repeated")
        for _ in range(repeat):
            rows.append(values)
            cells += len(values)
            if len(rows) > MAX_SHEET_ROWS or cells > MAX_SHEET_CELLS:
                raise CorruptDocument(
                    f"table has more than {MAX_SHEET_ROWS} rows or {MAX_SHEET_CELLS} cells"
                )
    return rows


def _walk(builder: BlockBuilder, element: Any, page: int | None, depth: int = 0) -> None:
    """Text elements in document order; lists become "- " items, indented by depth."""
    for child in element:
        name = local_name(child)
        namespace = child.tag.split("}", 1)[0][1:] if isinstance(child.tag, str) else ""
        if namespace == _TEXT and name == "h":
            try:
                level = int(child.get(f"{{{_TEXT}}}outline-level") or 1)
            except ValueError:
                level = 1
            builder.heading(" ".join(text_of(child).split()), level, page=page)
        elif namespace == _TEXT and name == "p":
            builder.paragraph(text_of(child), page=page)
        elif namespace == _TEXT and name == "list":
            for item in child.iter(f"{{{_TEXT}}}list-item"):
                text = " ".join(text_of(p) for p in item if local_name(p) in ("p", "h"))
                if text.strip():
                    builder.paragraph("  " * depth + "- " + text, page=page)
        elif namespace == _TABLE and name == "table":
            builder.table(_table_rows(child), page=page)
        elif depth < 50:
            _walk(builder, child, page, depth if name != "list" else depth + 1)


def parse_odf(data: bytes, content_type: str) -> ParsedDocument:
    kind = KINDS[content_type]
    package = SafeZip(data, kind)
    root = package.xml("content.xml")
    body = next(root.iter("{*}body"), None)
    if body is None:
        raise CorruptDocument(f"{kind} is corrupt: content.xml has no body")
    builder = BlockBuilder()
    pages = None
    if content_type == ODS:
        for table in body.iter(f"{{{_TABLE}}}table"):
            rows = _table_rows(table)
            if rows:
                builder.heading(table.get(f"{{{_TABLE}}}name") or "Sheet", 1)
                builder.table(rows)
    elif content_type == ODP:
        slides = list(body.iter(f"{{{_DRAW}}}page"))
        pages = len(slides)
        for number, slide in enumerate(slides, start=1):
            for frame in slide.iter(f"{{{_DRAW}}}frame"):
                if any(local_name(a) == "notes" for a in frame.iterancestors()):
                    continue
                if frame.get(f"{{{_PRES}}}class") == "title":
                    builder.heading(" ".join(text_of(frame).split()), 1, page=number)
                else:
                    _walk(builder, frame, number)
            for notes in slide.iter(f"{{{_PRES}}}notes"):
                for p in notes.iter(f"{{{_TEXT}}}p"):
                    text = text_of(p)
                    if text.strip():
                        builder.paragraph(f"Speaker notes: {text}", page=number)
    else:
        _walk(builder, body, None)
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=content_type,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        page_count=pages,
    )
