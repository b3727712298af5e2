"""Ruled tables on PDF pages, kept as tables instead of loose lines.

PDF has no table structure: a table is text placed between drawn lines, and
PDFium's text comes out in content order, which for a table exported from a
spreadsheet can be column by column. pdfplumber (MIT, on pdfminer.six) finds
the grid from the drawn lines (its ``lines`` strategy: ruled tables only, so
prose set in columns is never taken for a table); the cell text is then PDFium's
own characters, placed by position, so that a table reads like the rest of the
page. Those characters are left out of the page's lines.

pdfminer.six is pure Python and slower than PDFium, so it only ever sees pages
whose drawing could be a grid (straight edges at three or more heights and three
or more places across, found cheaply with PDFium), within a time budget per
document; whatever goes wrong in it, the page keeps its lines
(:meth:`TableFinder.find` never raises). A grid is kept as a table only when it
reads like one: two or more rows and columns with text, and short cells (boxes
around paragraphs are page layout).
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import io
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

if TYPE_CHECKING:
    from pdfplumber.pdf import PDF

log = logging.getLogger(__name__)

BUDGET_S = 20.0
"""Seconds of table detection per parse at most, and at most a third of the time the
sandbox's alarm leaves the parse; pages after that keep their lines."""
MAX_PATHS = 10_000  # more path objects is a drawing (a map, a chart), not a table
MAX_SEGMENTS = 50_000
MAX_PAGE_CHARS = 50_000
MAX_CELL_CHARS = 2000  # a "cell" longer than this is a framed page region, not a cell
MAX_MEAN_CELL_CHARS = 250  # cells of whole paragraphs: page regions drawn in boxes
_MIN_SLICE_S = 0.5  # CPU seconds a page gets even when the budget is nearly spent
_MAX_OBJECT_DEPTH = 3  # paths inside form XObjects count too
_MIN_EDGE = 5.0  # points; shorter edges are the ends of a thin rule drawn as a rectangle
_EDGE_STEP = 2.0  # points; edges closer than this are one rule (a rule's two sides)

# C0 controls PDFium may emit (e.g. \x02 for a line-end hyphen) are not cell text.
_SKIP = set(range(33)) | {0xFFFE, 0xFFFF}  # spaces too: gaps in the order become spaces


@dataclass(frozen=True)
class PageTable:
    """A table found on a page: its rows, first row the header, and the PDFium
    character indices of its text, which the page's lines leave out."""

    rows: list[list[str]]
    chars: frozenset[int]
    top: float  # PDF user space, y up


@dataclass
class _Cell:
    x0: float
    x1: float
    bottom: float  # PDF user space: y grows upwards
    top: float
    row: int
    column: int

    def holds(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.bottom <= y <= self.top


@dataclass
class _Grid:
    cells: list[_Cell]
    row_tops: list[float]  # each row's top, negated so the list is ascending
    rows: list[list[_Cell]]
    columns: int
    x0: float
    x1: float
    bottom: float
    top: float

    def cell_at(self, x: float, y: float) -> _Cell | None:
        if not (self.x0 <= x <= self.x1 and self.bottom <= y <= self.top):
            return None
        # The last row starting above y, then earlier rows: a cell merged over
        # several rows is listed in its first row only.
        row = bisect.bisect_right(self.row_tops, -y) - 1
        for r in range(min(max(row, 0), len(self.rows) - 1), -1, -1):
            for cell in self.rows[r]:
                if cell.holds(x, y):
                    return cell
        return None


@dataclass
class _Char:
    index: int
    text: str
    baseline: float
    size: float


class TableFinder:
    """Table detection for the pages of one parse; pdfplumber is opened on the
    first page that may hold a table, once, and closed by :meth:`close`."""

    def __init__(self, data: bytes, last_page: int) -> None:
        self._data = data
        self._last_page = last_page
        self._pdf: PDF | None = None
        self._pages: dict[int, Any] = {}
        self._spent_s = 0.0
        self._budget_s = _budget_s()
        self._disabled = False

    def find(
        self, page: pdfium.PdfPage, textpage: pdfium.PdfTextPage, index: int
    ) -> list[PageTable]:
        """The plausible ruled tables on page ``index`` (0-based); none when the page
        cannot hold one or detection fails."""
        if self._disabled or not _may_hold_table(page, textpage):
            return []
        started = time.monotonic()
        try:
            with _cpu_limit(max(self._budget_s - self._spent_s, _MIN_SLICE_S)):
                grids = self._grids(index)
            return [table for grid in grids if (table := _fill(grid, textpage)) is not None]
        except (Exception, _OutOfTime) as exc:  # a table is never worth the document
            # MemoryError included: the page's layout objects are gone with the frame.
            log.warning("PDF table detection failed on page %d: %r", index + 1, exc)
            self._disabled = True
            return []
        finally:
            self._spent_s += time.monotonic() - started
            if self._spent_s > self._budget_s:
                self._disabled = True

    def _grids(self, index: int) -> list[_Grid]:
        if self._pdf is None:
            self._open(index)
        plumber_page = self._pages.get(index + 1)
        if plumber_page is None:
            return []
        try:
            height = float(plumber_page.height)
            grids = [_grid(table, height) for table in plumber_page.find_tables()]
        finally:
            plumber_page.close()  # its layout objects; the page may be large
        return [grid for grid in grids if grid is not None]

    def _open(self, index: int) -> None:
        import pdfplumber

        logging.getLogger("pdfminer").setLevel(logging.ERROR)  # its per-object chatter
        self._pdf = pdfplumber.open(
            io.BytesIO(self._data), pages=list(range(index + 1, self._last_page + 1))
        )
        self._pages = {page.page_number: page for page in self._pdf.pages}

    def close(self) -> None:
        if self._pdf is not None:
            try:
                self._pdf.close()
            except Exception:  # closing must not fail the parse
                log.debug("closing pdfplumber failed", exc_info=True)
            self._pdf = None
            self._pages = {}


class _OutOfTime(BaseException):
    """pdfminer ran past what is left of the budget on one page; a BaseException so
    that pdfminer's own ``except Exception`` cannot swallow it."""


@contextlib.contextmanager
def _cpu_limit(seconds: float) -> Iterator[None]:
    """Interrupt pdfminer (pure Python, so a signal handler runs between its steps)
    after ``seconds`` of CPU time: a page that sends it looping must not run the parse
    into its time limit. Only the main thread can take signals; elsewhere (a test's
    thread pool) the budget check after each page is all there is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(*_: object) -> None:
        raise _OutOfTime(f"table detection ran past {seconds:.1f} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)  # once: nothing in pdfminer catches it
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _budget_s() -> float:
    """Tables must never cost a document its parse: the sandboxed child runs under an
    alarm (the parse's time limit), and detection takes a third of what it leaves."""
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    return min(BUDGET_S, left / 3) if left > 0 else BUDGET_S


def _may_hold_table(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> bool:
    """Cheap, with PDFium: an upright page with text whose straight path edges stand at
    three or more heights and three or more places across (a grid of at least 2 x 2;
    a page frame with a header rule is not one), and not so many paths or characters
    that pdfminer would crawl."""
    if page.get_rotation() % 360:
        return False  # pdfplumber and PDFium disagree on rotated coordinates
    chars = pdfium_c.FPDFText_CountChars(textpage)
    if chars <= 0 or chars > MAX_PAGE_CHARS:
        return False
    rows: set[int] = set()
    columns: set[int] = set()
    paths = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH,), max_depth=_MAX_OBJECT_DEPTH)
    segments = 0
    for count, obj in enumerate(paths, start=1):
        total = pdfium_c.FPDFPath_CountSegments(obj.raw)
        segments += max(total, 0)
        if count > MAX_PATHS or segments > MAX_SEGMENTS:
            return False  # a drawing
        _edges(obj, total, rows, columns)
        if len(rows) >= 3 and len(columns) >= 3:
            return True
    return False


def _edges(obj: pdfium.PdfObject, total: int, rows: set[int], columns: set[int]) -> None:
    """Add the heights of the path's horizontal edges to ``rows`` and the places of its
    vertical ones to ``columns``, in page space, in steps of :data:`_EDGE_STEP` points."""
    matrix = obj.get_matrix()
    x, y = ctypes.c_float(), ctypes.c_float()
    start = previous = (0.0, 0.0)
    for i in range(total):
        segment = pdfium_c.FPDFPath_GetPathSegment(obj.raw, i)
        if not pdfium_c.FPDFPathSegment_GetPoint(segment, ctypes.byref(x), ctypes.byref(y)):
            continue
        point = matrix.on_point(x.value, y.value)
        kind = pdfium_c.FPDFPathSegment_GetType(segment)
        if kind == pdfium_c.FPDF_SEGMENT_LINETO:
            _edge(previous, point, rows, columns)
        elif kind == pdfium_c.FPDF_SEGMENT_MOVETO:
            start = point
        if pdfium_c.FPDFPathSegment_GetClose(segment):
            _edge(point, start, rows, columns)
        previous = point


def _edge(
    a: tuple[float, float], b: tuple[float, float], rows: set[int], columns: set[int]
) -> None:
    dx, dy = abs(a[0] - b[0]), abs(a[1] - b[1])
    if dy < 1 and dx >= _MIN_EDGE:
        rows.add(round(a[1] / _EDGE_STEP))
    elif dx < 1 and dy >= _MIN_EDGE:
        columns.add(round(a[0] / _EDGE_STEP))


def _grid(table: Any, height: float) -> _Grid | None:
    """pdfplumber's table as cells in PDF user space (pdfplumber measures ``top`` down
    from the top of the page, PDFium ``y`` up from the bottom)."""
    rows: list[list[_Cell]] = []
    tops: list[float] = []
    cells: list[_Cell] = []
    width = 0
    for r, row in enumerate(table.rows):
        found: list[_Cell] = []
        for c, box in enumerate(row.cells):
            width = max(width, c + 1)
            if box is None:
                continue
            x0, top, x1, bottom = (float(v) for v in box)
            found.append(_Cell(x0, x1, height - bottom, height - top, r, c))
        rows.append(found)
        tops.append(-(height - float(row.bbox[1])))
        cells.extend(found)
    if len(rows) < 2 or width < 2 or not cells:
        return None
    return _Grid(
        cells=cells,
        row_tops=tops,
        rows=rows,
        columns=width,
        x0=min(c.x0 for c in cells),
        x1=max(c.x1 for c in cells),
        bottom=min(c.bottom for c in cells),
        top=max(c.top for c in cells),
    )


def _fill(grid: _Grid, textpage: pdfium.PdfTextPage) -> PageTable | None:
    """The grid's cells filled with PDFium's characters; None when it does not look
    like a table (too little text in it, or a "cell" holding a page region)."""
    found: dict[tuple[int, int], list[_Char]] = {}
    owned: set[int] = set()
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    x, y = ctypes.c_double(), ctypes.c_double()
    for index in range(pdfium_c.FPDFText_CountChars(textpage)):
        code = pdfium_c.FPDFText_GetUnicode(textpage, index)
        if code in _SKIP or pdfium_c.FPDFText_IsGenerated(textpage, index) == 1:
            continue
        if not pdfium_c.FPDFText_GetCharBox(
            textpage, index, ctypes.byref(left), ctypes.byref(right),
            ctypes.byref(bottom), ctypes.byref(top),
        ):  # fmt: skip
            continue
        cell = grid.cell_at((left.value + right.value) / 2, (bottom.value + top.value) / 2)
        if cell is None:
            continue
        baseline = math.nan
        if pdfium_c.FPDFText_GetCharOrigin(textpage, index, ctypes.byref(x), ctypes.byref(y)):
            baseline = y.value
        size = float(pdfium_c.FPDFText_GetFontSize(textpage, index))
        found.setdefault((cell.row, cell.column), []).append(
            _Char(index, _character(code), baseline, size)
        )
        owned.add(index)
    rows = [[""] * grid.columns for _ in grid.rows]
    for (r, c), chars in found.items():
        rows[r][c] = _cell_text(chars)
    if not _plausible(rows):
        return None
    return PageTable(rows=_split_stacked(rows), chars=frozenset(owned), top=grid.top)


def _character(code: int) -> str:
    try:
        return chr(code)
    except (ValueError, OverflowError):
        return "\ufffd"


def _cell_text(chars: list[_Char]) -> str:
    """The cell's lines top to bottom, each in PDFium's order; a gap in that order is
    a space. Lines are kept apart by newlines, so that rows stacked in one ruled
    cell can be told apart."""
    runs: list[list[_Char]] = []
    for char in sorted(chars, key=lambda c: c.index):
        if runs and not _new_line(runs[-1][-1], char):
            runs[-1].append(char)
        else:
            runs.append([char])
    lines: list[list[_Char]] = []
    for run in sorted(runs, key=lambda r: -_baseline(r[0])):  # stable: same-line runs keep order
        if lines and not _new_line(lines[-1][-1], run[0]):
            lines[-1].extend(run)
        else:
            lines.append(run)
    return "\n".join(_joined(line) for line in lines).strip()


def _baseline(char: _Char) -> float:
    return 0.0 if math.isnan(char.baseline) else char.baseline


def _new_line(previous: _Char, char: _Char) -> bool:
    drop = previous.baseline - char.baseline
    return not math.isnan(drop) and abs(drop) > 0.5 * max(char.size, previous.size, 1.0)


def _joined(chars: list[_Char]) -> str:
    parts: list[str] = []
    for i, char in enumerate(chars):
        if i and char.index != chars[i - 1].index + 1:
            parts.append(" ")
        parts.append(char.text)
    return "".join(parts)


def _split_stacked(rows: list[list[str]]) -> list[list[str]]:
    """Rows drawn without rules between them land in one ruled row, each cell holding
    one line per row: split such a row back when most of its cells have the same
    number of lines and the others one (which goes to the first). The first row with
    text is the header, whose cells wrap rather than stack rows: it stays whole."""
    out: list[list[str]] = []
    header_seen = False
    for row in rows:
        if not header_seen:
            header_seen = any(row)
            out.append(row)
            continue
        lines = [cell.split("\n") if cell else [] for cell in row]
        counts = {len(cell) for cell in lines if len(cell) > 1}
        stacked = [cell for cell in lines if len(cell) > 1]
        filled = [cell for cell in lines if cell]
        if len(counts) != 1 or len(stacked) < 2 or 2 * len(stacked) <= len(filled):
            out.append(row)
            continue
        depth = counts.pop()
        for k in range(depth):
            out.append(
                [cell[k] if len(cell) == depth else (cell[0] if k == 0 and cell else "")
                 for cell in lines]
            )  # fmt: skip
    return out


def _plausible(rows: list[list[str]]) -> bool:
    """Reads like a table: three or more cells with text, in two or more rows and
    columns, none of them (nor their mean) the length of a paragraph."""
    filled = [len(cell) for row in rows for cell in row if cell.strip()]
    if len(filled) < 3 or max(filled) > MAX_CELL_CHARS:
        return False
    if sum(filled) > MAX_MEAN_CELL_CHARS * len(filled):
        return False
    if sum(1 for row in rows if any(cell.strip() for cell in row)) < 2:
        return False
    columns = len(rows[0]) if rows else 0
    used = sum(1 for c in range(columns) if any(row[c].strip() for row in rows))
    return used >= 2
