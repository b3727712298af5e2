"""Ruled tables in PDFs become Markdown table blocks at their place on the page, their
cell text not repeated in paragraphs; pages without a grid, and failures of the table
finder, leave the page's lines as they were. PDFs are written by reportlab here."""

from __future__ import annotations

import io
import time

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfgen import canvas
from reportlab.platypus import (
    Flowable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Table,
    TableStyle,
)

from ragstream.documents import ParsedDocument
from ragstream.parsing import parse_bytes, parse_document, pdftables

ROWS = [
    ["Region", "Quarter", "Revenue"],
    ["Northwind", "Q1", "1200 EUR"],
    ["Southgate", "Q2", "950 EUR"],
    ["Eastmarch", "Q3", "1730 EUR"],
]
MARKDOWN = (
    "| Region | Quarter | Revenue |\n|---|---|---|\n| Northwind | Q1 | 1200 EUR |\n"
    "| Southgate | Q2 | 950 EUR |\n| Eastmarch | Q3 | 1730 EUR |"
)


def _grid(rows: list[list[str]], style: str = "GRID") -> Table:
    table = Table(rows)
    table.setStyle(TableStyle([(style, (0, 0), (-1, -1), 0.5, colors.black)]))
    return table


def report(*middle: Flowable) -> bytes:
    styles = getSampleStyleSheet()
    story: list[Flowable] = [
        Paragraph("Sales report", styles["Heading1"]),
        Paragraph("Sales rose in the north this year.", styles["BodyText"]),
        *middle,
        Paragraph("The south fell behind the plan.", styles["BodyText"]),
    ]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4).build(story)
    return buffer.getvalue()


def kinds(document: ParsedDocument) -> list[tuple[str, str]]:
    return [(b.kind, b.text) for b in document.blocks]


def test_a_ruled_table_is_a_table_block_in_reading_order() -> None:
    document = parse_bytes(report(_grid(ROWS)))
    assert kinds(document) == [
        ("heading", "Sales report"),
        ("paragraph", "Sales rose in the north this year."),
        ("table", MARKDOWN),
        ("paragraph", "The south fell behind the plan."),
    ]
    table = document.blocks[2]
    assert table.page == 1 and table.heading_path == ("Sales report",)
    # The cells' text is in the table only, never a loose line as well.
    for block in document.blocks:
        if block.kind != "table":
            assert not any(cell in block.text for row in ROWS for cell in row), block.text


def test_a_table_drawn_before_its_title_still_follows_it() -> None:
    """Spreadsheet exports draw the grid first; the title above it stays before it."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    top, pitch, columns = 700.0, 20.0, (60.0, 200.0, 300.0, 420.0)
    for r, row in enumerate(ROWS):
        for c, text in enumerate(row):
            pdf.drawString(columns[c] + 4, top - (r + 1) * pitch + 6, text)
    for r in range(len(ROWS) + 1):
        pdf.line(columns[0], top - r * pitch, columns[-1], top - r * pitch)
    for x in columns:
        pdf.line(x, top, x, top - len(ROWS) * pitch)
    pdf.setFont("Helvetica-Bold", 18)
    pdf.drawString(60, 740, "Quarterly figures")
    pdf.setFont("Helvetica", 10)
    pdf.drawString(60, 560, "Figures are unaudited.")
    pdf.save()
    assert kinds(parse_bytes(buffer.getvalue())) == [
        ("heading", "Quarterly figures"),
        ("table", MARKDOWN),
        ("paragraph", "Figures are unaudited."),
    ]


def test_rows_without_rules_between_them_are_split_back() -> None:
    """A grid ruled every few rows only (a government report's bands): each ruled row
    holds several rows, one line each, and comes out as those rows."""
    body = [["State", "Permits", "Total"]]
    bands = [[("Alabama", "18,870", "71,137"), ("Alaska", "209", "7,095")]]
    bands.append([("Arizona", "2,303", "27,087"), ("Arkansas", "3,298", "25,048")])
    for band in bands:
        body.append(["\n".join(values) for values in zip(*band, strict=True)])
    document = parse_bytes(report(_grid(body)))
    table = next(b.text for b in document.blocks if b.kind == "table")
    assert table.splitlines() == [
        "| State | Permits | Total |",
        "|---|---|---|",
        "| Alabama | 18,870 | 71,137 |",
        "| Alaska | 209 | 7,095 |",
        "| Arizona | 2,303 | 27,087 |",
        "| Arkansas | 3,298 | 25,048 |",
    ]


def test_a_page_with_a_shifted_media_box_maps_cells_right() -> None:
    """pdfplumber measures from the top of the media box, PDFium in user space: a media
    box that does not start at 0 must not move the cells."""
    reader = PdfReader(io.BytesIO(report(_grid(ROWS))))
    writer = PdfWriter()
    page = reader.pages[0]
    page.mediabox = RectangleObject([-30, -50, 600, 842])
    page.cropbox = RectangleObject([-20, -40, 590, 832])
    writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    assert ("table", MARKDOWN) in kinds(parse_bytes(out.getvalue()))


def test_boxes_and_rules_that_are_no_table_leave_the_lines() -> None:
    """A framed page with header and footer rules, and prose set in ruled boxes, are
    no tables: a grid cell holding a paragraph is a page region."""
    styles = getSampleStyleSheet()
    prose = " ".join(["Offsets are committed once the work is durable."] * 8)
    boxes = _grid([[Paragraph(prose, styles["BodyText"])] * 2] * 2)

    def frame(pdf: canvas.Canvas, _: object) -> None:
        pdf.rect(30, 30, 535, 780)
        pdf.line(40, 800, 555, 800)
        pdf.line(40, 40, 555, 40)

    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4).build(
        [Paragraph("Framed", styles["Heading1"]), Paragraph(prose, styles["BodyText"]), boxes],
        onFirstPage=frame,
    )
    document = parse_bytes(buffer.getvalue())
    assert document.blocks and all(b.kind != "table" for b in document.blocks)
    assert sum(b.text.count("committed once") for b in document.blocks) == 8 * 5


def test_a_failing_table_finder_keeps_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> list[object]:
        raise RuntimeError("pdfminer choked")

    monkeypatch.setattr(pdftables.TableFinder, "_grids", broken)
    document = parse_bytes(report(_grid(ROWS)))
    assert all(b.kind != "table" for b in document.blocks)
    text = "\n".join(b.text for b in document.blocks)
    assert all(cell in text for row in ROWS for cell in row)


def test_past_its_time_budget_table_detection_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection never costs the parse its time limit: once its budget is spent, the
    remaining pages keep their lines."""
    monkeypatch.setattr(pdftables, "BUDGET_S", 0.0)
    document = parse_bytes(report(_grid(ROWS), PageBreak(), _grid(ROWS)))
    assert [(b.kind, b.page) for b in document.blocks if b.kind == "table"] == [("table", 1)]
    assert any("Northwind" in b.text and b.kind == "paragraph" for b in document.blocks)


def test_a_page_that_sends_pdfminer_looping_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """pdfminer is pure Python: a CPU-time alarm interrupts it, and the page keeps its
    lines long before the parse's own time limit."""
    from pdfplumber.page import Page

    def forever(*_: object, **__: object) -> list[object]:
        while True:
            pass

    monkeypatch.setattr(Page, "find_tables", forever)
    monkeypatch.setattr(pdftables, "BUDGET_S", 0.2)
    started = time.monotonic()
    document = parse_bytes(report(_grid(ROWS)))
    assert time.monotonic() - started < 10
    assert all(b.kind != "table" for b in document.blocks)
    assert any("Northwind" in b.text for b in document.blocks)


def test_pdf_tables_through_the_sandbox() -> None:
    """pdfplumber is imported in the confined parser child, on the first grid it meets."""
    document = parse_document(report(_grid(ROWS)), filename=None, timeout_s=60, memory_mb=512)
    assert ("table", MARKDOWN) in kinds(document)
