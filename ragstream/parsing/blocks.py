"""Block assembly shared by every parser.

Each parser only reports "here is a heading of level N" or "here is a
paragraph"; the heading path each block carries is tracked here once, so all
formats agree on what "the enclosing headings" means.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragstream.documents import Block

MAX_HEADING_LEVEL = 9


def _storable(text: str) -> str:
    """NUL cannot be stored in a PostgreSQL text column; it carries no meaning in prose."""
    return text.replace("\x00", "").strip() if "\x00" in text else text.strip()


def collapse_whitespace(text: str) -> str:
    """Inline text from markup: runs of whitespace become one space (linear time)."""
    return " ".join(text.split())


def _cell(text: str) -> str:
    """One Markdown table cell: a pipe would end the cell, a newline the row."""
    return collapse_whitespace(_storable(text)).replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as a Markdown table, one row per line, padded to the widest row; rows
    with no text at all are dropped, and an empty result means no table."""
    cells = [[_cell(c) for c in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


class BlockBuilder:
    """Collects blocks in reading order and keeps the stack of open headings."""

    def __init__(self) -> None:
        self._blocks: list[Block] = []
        self._open: list[tuple[int, str]] = []
        self._path: tuple[str, ...] = ()

    def heading(self, text: str, level: int, *, page: int | None = None) -> None:
        """A heading closes every open heading of the same or a deeper level."""
        text = _storable(text)
        if not text:
            return
        level = min(max(level, 1), MAX_HEADING_LEVEL)
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        parents = tuple(title for _, title in self._open)
        self._blocks.append(
            Block(text=text, kind="heading", page=page, heading_path=parents, level=level)
        )
        self._open.append((level, text))
        self._path = (*parents, text)

    def paragraph(self, text: str, *, page: int | None = None) -> None:
        text = _storable(text)
        if text:
            self._blocks.append(Block(text=text, page=page, heading_path=self._path))

    def table(self, rows: Sequence[Sequence[str]], *, page: int | None = None) -> None:
        """A table as Markdown; the first row is the header (an empty one when rows
        have no natural header, so the chunker still has a row to repeat)."""
        text = markdown_table(rows)
        if text:
            self._blocks.append(Block(text=text, kind="table", page=page, heading_path=self._path))

    def ocr_paragraph(self, text: str, *, page: int | None = None) -> None:
        text = _storable(text)
        if text:
            self._blocks.append(Block(text=text, kind="ocr", page=page, heading_path=self._path))

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)
