"""Tables stay tables: HTML, DOCX, ODT and PPTX parse into Markdown table blocks (XLSX
and ODS in test_formats, PDF in test_pdf_tables), and the chunker keeps rows whole,
repeating the header in every piece of a table it has to split."""

from __future__ import annotations

import io
import zipfile

import docx

from ragstream.chunking import (
    ChunkerConfig,
    chunk_document,
    count_minilm_tokens,
    count_minilm_tokens_batch,
)
from ragstream.documents import Block, ParsedDocument
from ragstream.parsing.blocks import markdown_table
from ragstream.parsing.core import parse_bytes

CONFIG = ChunkerConfig(target_tokens=64, overlap_tokens=16, max_tokens=254)
HEADER = "| Region | Quarter | Revenue |"
SEPARATOR = "|---|---|---|"


def chunk(*blocks: Block, config: ChunkerConfig = CONFIG) -> list[str]:
    document = ParsedDocument(
        blocks=blocks, content_type="text/html", parser="test", parser_version="0"
    )
    chunks = chunk_document(
        document, config, count_minilm_tokens, count_tokens_batch=count_minilm_tokens_batch
    )
    for c in chunks:
        assert c.token_count <= config.max_tokens
    return [c.text for c in chunks]


def table(rows: int) -> Block:
    body = [[f"region{i}", f"Q{i % 4 + 1}", f"{1000 + i} EUR"] for i in range(rows)]
    text = markdown_table([["Region", "Quarter", "Revenue"], *body])
    return Block(text=text, kind="table", page=3)


def test_a_small_table_is_one_chunk_with_its_neighbours() -> None:
    texts = chunk(Block("Before the table."), table(3), Block("After the table."))
    assert len(texts) == 1
    assert HEADER in texts[0] and "| region2 | Q3 | 1002 EUR |" in texts[0]


def test_a_large_table_is_split_between_rows_with_the_header_repeated() -> None:
    big = table(60)
    texts = chunk(big)
    assert len(texts) > 3
    rows_seen: list[str] = []
    for text in texts:
        lines = text.split("\n")
        assert lines[:2] == [HEADER, SEPARATOR], text
        for line in lines[2:]:
            assert line.startswith("| region") and line.endswith(" EUR |"), line
            rows_seen.append(line)
    # Every row exactly once, in order: no row cut, none repeated as overlap.
    assert rows_seen == big.text.split("\n")[2:]


def test_text_around_a_split_table_keeps_its_place() -> None:
    texts = chunk(Block("Intro sentence."), table(60), Block("Closing sentence."))
    assert texts[0].startswith("Intro sentence.")
    assert texts[-1].endswith("Closing sentence.")
    assert all(HEADER in t for t in texts[1:-1])


def test_a_row_larger_than_a_chunk_is_the_only_thing_cut_inside() -> None:
    long_cell = " ".join(f"word{i}" for i in range(200))
    text = markdown_table([["Name", "Notes"], ["short", "fine"], ["long", long_cell], ["x", "y"]])
    texts = chunk(Block(text, kind="table"))
    pieces = [t for t in texts if "word" in t]
    assert len(pieces) > 1
    assert "| Name | Notes |\n|---|---|\n| long | word0 word1" in pieces[0]
    joined = " ".join(pieces)
    assert all(f"word{i} " in joined or f"word{i} |" in joined for i in range(200))
    # The rows around it stay whole, each under the header.
    assert texts[0].startswith("| Name | Notes |\n|---|---|\n| short | fine |\n")
    assert texts[-1].endswith("| Name | Notes |\n|---|---|\n| x | y |")


def test_html_tables_become_markdown_with_th_as_header() -> None:
    page = b"""<html><body><h1>Prices</h1>
    <table><caption>Plans</caption>
      <tr><td>basic</td><td>5 | 6</td></tr>
      <thead><tr><th>Plan</th><th>Price</th></tr></thead>
      <tr><td>pro</td><td>
        <table><tr><td>inner</td><td>cell</td></tr></table>
      </td></tr>
    </table><p>After.</p></body></html>"""
    document = parse_bytes(page)
    kinds = [(b.kind, b.text) for b in document.blocks]
    assert kinds == [
        ("heading", "Prices"),
        ("paragraph", "Plans"),
        (
            "table",
            "| Plan | Price |\n|---|---|\n| basic | 5 \\| 6 |\n| pro | inner cell |",
        ),
        ("paragraph", "After."),
    ]
    assert document.blocks[2].heading_path == ("Prices",)


def test_html_table_without_th_uses_its_first_row() -> None:
    document = parse_bytes(
        b"<html><body><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table></body></html>"
    )
    assert [b.text for b in document.blocks] == ["| a | b |\n|---|---|\n| c |  |"]


def test_docx_tables_in_document_order_between_paragraphs() -> None:
    word = docx.Document()
    word.add_paragraph("Before the table.")
    grid = word.add_table(rows=3, cols=2)
    for r, row in enumerate([("Key", "Value"), ("acks", "all"), ("retries", "5")]):
        for c, text in enumerate(row):
            grid.cell(r, c).text = text
    inner = grid.cell(2, 1).add_table(rows=1, cols=2)
    inner.cell(0, 0).text = "nested"
    inner.cell(0, 1).text = "text"
    word.add_paragraph("After the table.")
    out = io.BytesIO()
    word.save(out)
    document = parse_bytes(out.getvalue(), "t.docx")
    assert [(b.kind, b.text) for b in document.blocks] == [
        ("paragraph", "Before the table."),
        ("table", "| Key | Value |\n|---|---|\n| acks | all |\n| retries | 5 nested text |"),
        ("paragraph", "After the table."),
    ]


ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
)


def test_odt_tables_in_document_order_between_paragraphs() -> None:
    """Written by hand as LibreOffice lays it out (no ODF writer in the dev tools)."""

    def cell(text: str, extra: str = "") -> str:
        return f"<table:table-cell{extra}><text:p>{text}</text:p></table:table-cell>"

    rows = [("Key", "Value"), ("acks", "all"), ("retries", "5")]
    table = (
        '<table:table table:name="Settings"><table:table-column table:number-columns-'
        'repeated="2"/><table:table-header-rows><table:table-row>'
        + "".join(cell(text) for text in rows[0])
        + "</table:table-row></table:table-header-rows>"
        + "".join(
            "<table:table-row>" + "".join(cell(text) for text in row) + "</table:table-row>"
            for row in rows[1:]
        )
        + "</table:table>"
    )
    content = (
        f'<?xml version="1.0"?><office:document-content {ODF_NS}><office:body><office:text>'
        '<text:h text:outline-level="1">Producer</text:h><text:p>Before the table.</text:p>'
        f"{table}<text:p>After the table.</text:p></office:text></office:body>"
        "</office:document-content>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED
        )
        archive.writestr("content.xml", content)
    document = parse_bytes(buffer.getvalue(), "t.odt")
    assert [(b.kind, b.text) for b in document.blocks] == [
        ("heading", "Producer"),
        ("paragraph", "Before the table."),
        ("table", "| Key | Value |\n|---|---|\n| acks | all |\n| retries | 5 |"),
        ("paragraph", "After the table."),
    ]
    assert document.blocks[2].heading_path == ("Producer",)


def test_pptx_tables_on_their_slide_after_the_title() -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Broker settings"
    grid = slide.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([("Key", "Value"), ("acks", "all"), ("retries", "5 | 6")]):
        for c, text in enumerate(row):
            grid.cell(r, c).text = text
    buffer = io.BytesIO()
    deck.save(buffer)
    document = parse_bytes(buffer.getvalue(), "t.pptx")
    assert [(b.kind, b.text, b.page) for b in document.blocks] == [
        ("heading", "Broker settings", 1),
        ("table", "| Key | Value |\n|---|---|\n| acks | all |\n| retries | 5 \\| 6 |", 1),
    ]
    assert document.blocks[1].heading_path == ("Broker settings",)
