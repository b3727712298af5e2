"""PPTX and XLSX to blocks, read from the package XML through :mod:`safezip`.

The XML is read directly rather than through python-pptx/openpyxl: those load
the whole package with their own parsers, past the caps set here. Slides come
in presentation order with the slide number as the block's page; a workbook
gives one heading per sheet and its cells (formulas as their cached values) as
table rows, capped per sheet so a huge or amplified sheet ends the parse.
"""

from __future__ import annotations

import posixpath
from typing import Any

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.safezip import SafeZip, local_name, text_of

PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PARSER = "ooxml"
PARSER_VERSION = "1"

MAX_SHEET_ROWS = 10_000
MAX_SHEET_CELLS = 200_000
MAX_SHEET_CHARS = 16 * 1024 * 1024
MAX_SHARED_STRINGS = 1_000_000

_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_TITLE_PLACEHOLDERS = ("title", "ctrTitle")


def _rels(package: SafeZip, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type suffix, target path inside the package)."""
    folder, name = posixpath.split(part)
    rels_name = posixpath.join(folder, "_rels", name + ".rels")
    if rels_name not in package:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for rel in package.xml(rels_name):
        if rel.get("TargetMode") == "External":
            continue
        target = rel.get("Target") or ""
        path = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
        out[rel.get("Id") or ""] = (
            (rel.get("Type") or "").rsplit("/", 1)[-1],
            posixpath.normpath(path),
        )
    return out


def _paragraphs(body: Any) -> list[tuple[str, int]]:
    """DrawingML paragraphs as (text, list level or -1 when not a list item)."""
    out: list[tuple[str, int]] = []
    for p in body.iter("{*}p"):
        text = "".join(t.text or "" for t in p.iter("{*}t"))
        if not text.strip():
            continue
        ppr = p.find("{*}pPr")
        level = -1
        if ppr is not None and (
            ppr.find("{*}buChar") is not None or ppr.find("{*}buAutoNum") is not None
        ):
            level = int(ppr.get("lvl") or 0)
        out.append((text, level))
    return out


def _emit_paragraphs(builder: BlockBuilder, paragraphs: list[tuple[str, int]], page: int) -> None:
    for text, level in paragraphs:
        builder.paragraph(("  " * level + "- " + text) if level >= 0 else text, page=page)


def parse_pptx(data: bytes) -> ParsedDocument:
    package = SafeZip(data, "PPTX")
    main = "ppt/presentation.xml"
    rels = _rels(package, main)
    slides: list[str] = []
    for sld in package.xml(main).iter("{*}sldId"):
        rel = rels.get(sld.get(f"{{{_R}}}id") or "")
        if rel is not None and rel[1] in package:
            slides.append(rel[1])
    builder = BlockBuilder()
    for number, slide in enumerate(slides, start=1):
        root = package.xml(slide)
        titled = False
        for shape in root.iter("{*}sp", "{*}graphicFrame"):
            if local_name(shape) == "graphicFrame":
                for table in shape.iter("{*}tbl"):
                    rows = [[text_of(tc) for tc in tr.iter("{*}tc")] for tr in table.iter("{*}tr")]
                    builder.table(rows, page=number)
                continue
            ph = next(shape.iter("{*}ph"), None)
            body = shape.find("{*}txBody")
            if body is None:
                continue
            if ph is not None and ph.get("type") in _TITLE_PLACEHOLDERS and not titled:
                titled = True
                title = " ".join(text for text, _ in _paragraphs(body))
                builder.heading(" ".join(title.split()), 1, page=number)
                continue
            _emit_paragraphs(builder, _paragraphs(body), number)
        for kind, target in _rels(package, slide).values():
            if kind == "notesSlide" and target in package:
                notes = package.xml(target)
                for shape in notes.iter("{*}sp"):
                    ph = next(shape.iter("{*}ph"), None)
                    body = shape.find("{*}txBody")
                    if body is None or ph is None or ph.get("type") != "body":
                        continue
                    for text, _ in _paragraphs(body):
                        builder.paragraph(f"Speaker notes: {text}", page=number)
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=PPTX,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        page_count=len(slides),
    )


def _column(ref: str) -> int:
    """0-based column of an A1 reference (``"C7"`` -> 2)."""
    col = 0
    for ch in ref:
        if not ch.isalpha():
            break
        col = col * 26 + (ord(ch.upper()) - 64)
        if col > 16_384:
            raise CorruptDocument(f"XLSX cell reference out of range: {ref[:20]}")
    return col - 1


def _shared_strings(package: SafeZip) -> list[str]:
    name = "xl/sharedStrings.xml"
    if name not in package:
        return []
    strings: list[str] = []
    for si in package.xml(name).iter("{*}si"):
        strings.append("".join(t.text or "" for t in si.iter("{*}t")))
        if len(strings) > MAX_SHARED_STRINGS:
            raise CorruptDocument(f"XLSX has more than {MAX_SHARED_STRINGS} shared strings")
    return strings


def parse_xlsx(data: bytes) -> ParsedDocument:
    package = SafeZip(data, "XLSX")
    main = "xl/workbook.xml"
    rels = _rels(package, main)
    strings = _shared_strings(package)
    builder = BlockBuilder()
    sheets = 0
    for sheet in package.xml(main).iter("{*}sheet"):
        rel = rels.get(sheet.get(f"{{{_R}}}id") or "")
        if rel is None or rel[1] not in package:
            continue
        sheets += 1
        name = sheet.get("name") or f"Sheet {sheets}"
        rows = _sheet_rows(package.xml(rel[1]), strings, name)
        if rows:
            builder.heading(name, 1)
            builder.table(rows)
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=XLSX,
        parser=PARSER,
        parser_version=PARSER_VERSION,
    )


def _sheet_rows(root: Any, strings: list[str], sheet: str) -> list[list[str]]:
    rows: list[list[str]] = []
    cells = chars = 0
    for row in root.iter("{*}row"):
        if len(rows) >= MAX_SHEET_ROWS:
            raise CorruptDocument(f"XLSX sheet {sheet!r} has more than {MAX_SHEET_ROWS} rows")
        values: dict[int, str] = {}
        for position, c in enumerate(row.iter("{*}c")):
            cells += 1
            if cells > MAX_SHEET_CELLS:
                raise CorruptDocument(f"XLSX sheet {sheet!r} has more than {MAX_SHEET_CELLS} cells")
            kind = c.get("t")
            v = c.find("{*}v")
            if kind == "inlineStr":
                text = "".join(t.text or "" for t in c.iter("{*}t"))
            elif v is None or v.text is None:
                continue
            elif kind == "s":
                try:
                    text = strings[int(v.text)]
                except (ValueError, IndexError):
                    raise CorruptDocument("XLSX refers to a missing shared string") from None
            elif kind == "b":
                text = "TRUE" if v.text.strip() == "1" else "FALSE"
            else:
                text = v.text  # numbers, errors, and formulas' cached results
            chars += len(text)
            if chars > MAX_SHEET_CHARS:
                raise CorruptDocument(
                    f"XLSX sheet {sheet!r} expands past {MAX_SHEET_CHARS // (1024 * 1024)} MiB "
                    "of cell text"
                )
            ref = c.get("r")
            values[_column(ref) if ref else position] = text
        if values:
            width = max(values) + 1
            if width > 16_384:
                raise CorruptDocument(f"XLSX sheet {sheet!r} is too wide")
            cells += width - len(values)  # padding counts against the cap too
            if cells > MAX_SHEET_CELLS:
                raise CorruptDocument(f"XLSX sheet {sheet!r} has more than {MAX_SHEET_CELLS} cells")
            rows.append([values.get(i, "") for i in range(width)])
    if rows:
        # A sheet's first row is taken as its header row.
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
    return rows
