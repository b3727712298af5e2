"""Legacy Excel (.xls, BIFF5-8) with xlrd: per sheet a heading and its cells as table rows,
with the same per-sheet caps as XLSX. Other legacy binary Office files stay refused."""

from __future__ import annotations

import io
from functools import cache
from importlib.metadata import version
from typing import Any

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.ooxml import MAX_SHEET_CELLS, MAX_SHEET_CHARS, MAX_SHEET_ROWS

XLS = "application/vnd.ms-excel"
PARSER = "xls"


@cache
def parser_version() -> str:
    return f"xlrd/{version('xlrd')}"


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_xls(data: bytes) -> ParsedDocument:
    import xlrd  # type: ignore[import-untyped]

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True, logfile=io.StringIO())
    except (xlrd.XLRDError, xlrd.compdoc.CompDocError, ValueError, IndexError, KeyError) as exc:
        raise CorruptDocument(f"XLS is corrupt or unreadable: {exc}") from None
    builder = BlockBuilder()
    for index in range(book.nsheets):
        sheet = book.get_sheet(index)
        if sheet.nrows > MAX_SHEET_ROWS or sheet.nrows * sheet.ncols > MAX_SHEET_CELLS:
            raise CorruptDocument(
                f"XLS sheet {sheet.name!r} has more than {MAX_SHEET_ROWS} rows "
                f"or {MAX_SHEET_CELLS} cells"
            )
        rows = [[_text(v) for v in sheet.row_values(r)] for r in range(sheet.nrows)]
        if sum(len(c) for row in rows for c in row) > MAX_SHEET_CHARS:
            raise CorruptDocument(f"XLS sheet {sheet.name!r} has too much text")
        if any(any(c.strip() for c in row) for row in rows):
            builder.heading(sheet.name, 1)
            builder.table(rows)
    return ParsedDocument(
        blocks=builder.blocks, content_type=XLS, parser=PARSER, parser_version=parser_version()
    )
