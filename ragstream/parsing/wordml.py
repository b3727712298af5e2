"""Word 2003 XML ("WordprocessingML", one XML file) to blocks.

Word 2003 to 2010 save it as .xml, and it travels renamed .doc; it is the body of
a DOCX without the ZIP: paragraphs (``w:p``), runs of text (``w:t``), tables
(``w:tbl``), and styles whose names say which paragraphs are headings. Read with
:func:`safezip.parse_xml`: no DTD, no entities, no network.
"""

from __future__ import annotations

import re
from typing import Any

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import MAX_HEADING_LEVEL, BlockBuilder
from ragstream.parsing.safezip import local_name, parse_xml
from ragstream.parsing.sniff import WORDML

PARSER = "wordml"
PARSER_VERSION = "1"

_W = "http://schemas.microsoft.com/office/word/2003/wordml"
_VAL = f"{{{_W}}}val"
_HEADING_STYLE = re.compile(r"heading\s*([1-9])", re.IGNORECASE)
_BODY_OUTLINE_LEVEL = 9
_MAX_DEPTH = 100
_SKIPPED = {"pPr", "rPr", "tblPr", "trPr", "tcPr", "tblGrid", "sectPr", "instrText", "delText"}


def parse_wordml(data: bytes) -> ParsedDocument:
    root = parse_xml(data, "Word 2003 XML")
    if local_name(root) != "wordDocument":
        raise CorruptDocument("Word 2003 XML has no w:wordDocument root")
    body = root.find(f"{{{_W}}}body")
    if body is None:
        raise CorruptDocument("Word 2003 XML has no w:body")
    builder = BlockBuilder()
    _walk(builder, body, _heading_styles(root), 0)
    title = root.findtext("{*}DocumentProperties/{*}Title") or ""
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=WORDML,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        metadata={"title": title.strip()} if title.strip() else {},
    )


def _heading_styles(root: Any) -> dict[str, int]:
    """Paragraph style id -> heading level, from ``heading N`` names or outline levels."""
    levels: dict[str, int] = {}
    styles = root.find(f"{{{_W}}}styles")
    for style in [] if styles is None else styles.iter(f"{{{_W}}}style"):
        style_id = style.get(f"{{{_W}}}styleId") or ""
        name = style.find(f"{{{_W}}}name")
        match = _HEADING_STYLE.fullmatch((name.get(_VAL) or "") if name is not None else "")
        if match:
            levels[style_id] = int(match.group(1))
        elif (outline := _outline(style.find(f"{{{_W}}}pPr"))) is not None:
            levels[style_id] = outline
    return {key: level for key, level in levels.items() if level}


def _outline(ppr: Any) -> int | None:
    """1-based level of a ``w:outlineLvl``; 0 for body text; None when absent."""
    element = None if ppr is None else ppr.find(f"{{{_W}}}outlineLvl")
    if element is None:
        return None
    try:
        raw = int(element.get(_VAL) or "")
    except ValueError:
        return None
    return 0 if raw >= _BODY_OUTLINE_LEVEL or raw < 0 else raw + 1


def _walk(builder: BlockBuilder, element: Any, headings: dict[str, int], depth: int) -> None:
    """Paragraphs and tables in document order, through sections and other wrappers."""
    for child in element:
        name = local_name(child)
        if name == "p":
            _paragraph(builder, child, headings)
        elif name == "tbl":
            builder.table(_rows(child))
        elif name not in _SKIPPED and depth < _MAX_DEPTH:
            _walk(builder, child, headings, depth + 1)


def _paragraph(builder: BlockBuilder, p: Any, headings: dict[str, int]) -> None:
    text = _text(p)
    if text.strip():
        ppr = p.find(f"{{{_W}}}pPr")
        level = _outline(ppr)
        if level is None:
            style = None if ppr is None else ppr.find(f"{{{_W}}}pStyle")
            level = headings.get(style.get(_VAL) or "", 0) if style is not None else 0
        if level:
            builder.heading(" ".join(text.split()), min(level, MAX_HEADING_LEVEL))
        else:
            builder.paragraph(text)
    for table in p.iter(f"{{{_W}}}tbl"):  # a table inside a paragraph follows its text
        if _outer_table(table, p) is None:
            builder.table(_rows(table))


def _outer_table(table: Any, stop: Any) -> Any:
    """The table ``table`` sits in below ``stop``, if any (it is then part of that one)."""
    parent = table.getparent()
    while parent is not None and parent is not stop:
        if local_name(parent) == "tbl":
            return parent
        parent = parent.getparent()
    return None


def _text(element: Any, depth: int = 0) -> str:
    """Run text, tabs and line breaks; nested tables and field codes left out."""
    parts: list[str] = []
    for child in element:
        name = local_name(child)
        if name == "t":
            parts.append(child.text or "")
        elif name == "tab":
            parts.append("\t")
        elif name in ("br", "cr"):
            parts.append("\n")
        elif name not in _SKIPPED and name != "tbl" and depth < _MAX_DEPTH:
            parts.append(_text(child, depth + 1))
    return "".join(parts)


def _rows(table: Any) -> list[list[str]]:
    """Cell texts per row (a nested table flattened into its cell); a cell spanning
    columns is followed by empty ones, so that columns stay aligned."""
    rows: list[list[str]] = []
    for tr in table.findall(f"{{{_W}}}tr"):
        cells: list[str] = []
        for tc in tr.findall(f"{{{_W}}}tc"):
            texts = [_text(p) for p in tc.iter(f"{{{_W}}}p")]
            cells.append(" ".join(t for t in texts if t.strip()))
            span = tc.find(f"{{{_W}}}tcPr/{{{_W}}}gridSpan")
            try:
                extra = int(span.get(_VAL) or 1) - 1 if span is not None else 0
            except ValueError:
                extra = 0
            cells.extend([""] * min(max(extra, 0), 63))
        rows.append(cells)
    return rows
