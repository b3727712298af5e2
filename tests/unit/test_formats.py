"""Office, e-book and e-mail formats: fixtures written by the libraries that write them
(or hand-built zips where the format is simple), and hostile ones."""

from __future__ import annotations

import io
import struct
import zipfile
from email.message import EmailMessage

import pytest

from ragstream.errors import CorruptDocument, UnsupportedDocument
from ragstream.parsing import parse_bytes, parse_document, sniff_content_type
from ragstream.parsing.sniff import EML, EPUB, MSG, ODP, ODS, ODT, PPT, PPTX, RTF, XLSX

ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"'
)


def _zip(members: dict[str, bytes | str], *, stored_first: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if stored_first is not None:
            archive.writestr("mimetype", stored_first, compress_type=zipfile.ZIP_STORED)
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _odf(mimetype: str, body: str) -> bytes:
    content = (
        f'<?xml version="1.0"?><office:document-content {ODF_NS}><office:body>{body}'
        "</office:body></office:document-content>"
    )
    return _zip({"content.xml": content}, stored_first=mimetype)


def pptx_bytes() -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for number in (1, 2):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide title {number}"
        slide.placeholders[1].text_frame.text = f"Body text of slide {number}"
        slide.notes_slide.notes_text_frame.text = f"Notes for slide {number}"
    return _read(deck)


def _read(document: object) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)  # type: ignore[attr-defined]
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Prices"
    sheet.append(["Item", "Price"])
    sheet.append(["apple", 3])
    sheet.append(["pear", 5])
    sheet["C2"] = "=B2*2"
    second = book.create_sheet("Notes")
    second["A1"] = "second sheet text"
    return _read(book)


def epub_bytes() -> bytes:
    container = (
        '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>'
    )
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><metadata><dc:title>Book</dc:title>'
        '</metadata><manifest><item id="b" href="two.xhtml"/><item id="a" href="one.xhtml"/>'
        '</manifest><spine><itemref idref="a"/><itemref idref="b"/></spine></package>'
    )

    def chapter(n: int) -> str:
        return (
            '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body>'
            f"<h1>Chapter {n}</h1><p>Text of chapter {n}.</p><ul><li>item {n}</li></ul>"
            "</body></html>"
        )

    return _zip(
        {
            "META-INF/container.xml": container,
            "OEBPS/content.opf": opf,
            "OEBPS/one.xhtml": chapter(1),
            "OEBPS/two.xhtml": chapter(2),
        },
        stored_first="application/epub+zip",
    )


def eml_bytes(attachment: bytes | None = None, name: str = "a.xlsx") -> bytes:
    message = EmailMessage()
    message["Subject"] = "Quarterly figures"
    message["From"] = "Ana <ana@example.com>"
    message["To"] = "bo@example.com"
    message["Date"] = "Mon, 07 Dec 2026 10:00:00 +0000"
    message.set_content("Hello Bo,\n\nthe figures are attached.\n")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename=name
        )
    return message.as_bytes()


def test_pptx_slides_in_order_with_notes_and_slide_numbers() -> None:
    data = pptx_bytes()
    assert sniff_content_type(data, "deck.bin") == PPTX
    doc = parse_bytes(data)
    assert doc.page_count == 2
    headings = [(b.text, b.page) for b in doc.blocks if b.kind == "heading"]
    assert headings == [("Slide title 1", 1), ("Slide title 2", 2)]
    body = [b for b in doc.blocks if b.text == "Body text of slide 2"]
    assert body and body[0].page == 2 and body[0].heading_path == ("Slide title 2",)
    assert any(b.text == "Speaker notes: Notes for slide 1" and b.page == 1 for b in doc.blocks)


def test_xlsx_one_heading_and_table_per_sheet_with_cached_formula_values() -> None:
    data = xlsx_bytes()
    assert sniff_content_type(data, None) == XLSX
    doc = parse_bytes(data)
    assert [b.text for b in doc.blocks if b.kind == "heading"] == ["Prices", "Notes"]
    table = next(b for b in doc.blocks if b.kind == "table")
    assert table.heading_path == ("Prices",)
    assert table.text.splitlines()[0] == "| Item | Price |"
    assert "| apple | 3 |" in table.text
    # openpyxl writes no cached value for a formula: the cell is empty, never "=B2*2".
    assert "B2*2" not in table.text
    cached = _xlsx('<row r="1"><c r="A1"><f>1+1</f><v>2</v></c><c r="C1" t="b"><v>1</v></c></row>')
    assert parse_bytes(cached).blocks[1].text.splitlines()[0] == "| 2 |  | TRUE |"


def test_odt_ods_odp() -> None:
    odt = _odf(
        ODT,
        '<office:text><text:h text:outline-level="1">Intro</text:h><text:p>First para.</text:p>'
        "<text:list><text:list-item><text:p>point one</text:p></text:list-item></text:list>"
        "</office:text>",
    )
    assert sniff_content_type(odt, "x.docx") == ODT
    doc = parse_bytes(odt)
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "Intro"),
        ("paragraph", "First para."),
        ("paragraph", "- point one"),
    ]
    assert doc.blocks[1].heading_path == ("Intro",)

    ods = _odf(
        ODS,
        '<office:spreadsheet><table:table table:name="Budget"><table:table-row>'
        "<table:table-cell><text:p>a</text:p></table:table-cell>"
        '<table:table-cell table:number-columns-repeated="2"><text:p>b</text:p></table:table-cell>'
        "</table:table-row></table:table></office:spreadsheet>",
    )
    assert sniff_content_type(ods, None) == ODS
    blocks = parse_bytes(ods).blocks
    assert blocks[0].text == "Budget" and blocks[1].kind == "table"
    assert blocks[1].text.splitlines()[0] == "| a | b | b |"

    odp = _odf(
        ODP,
        "<office:presentation>"
        + "".join(
            f'<draw:page><draw:frame presentation:class="title"><draw:text-box><text:p>T{n}'
            f"</text:p></draw:text-box></draw:frame><draw:frame><draw:text-box><text:p>body {n}"
            f"</text:p></draw:text-box></draw:frame><presentation:notes><draw:frame>"
            f"<draw:text-box><text:p>note {n}</text:p></draw:text-box></draw:frame>"
            "</presentation:notes></draw:page>"
            for n in (1, 2)
        )
        + "</office:presentation>",
    )
    assert sniff_content_type(odp, None) == ODP
    doc = parse_bytes(odp)
    assert [(b.text, b.page) for b in doc.blocks] == [
        ("T1", 1),
        ("body 1", 1),
        ("Speaker notes: note 1", 1),
        ("T2", 2),
        ("body 2", 2),
        ("Speaker notes: note 2", 2),
    ]


def test_epub_chapters_in_spine_order() -> None:
    data = epub_bytes()
    assert sniff_content_type(data, None) == EPUB
    doc = parse_bytes(data)
    assert [b.text for b in doc.blocks] == [
        "Chapter 1",
        "Text of chapter 1.",
        "- item 1",
        "Chapter 2",
        "Text of chapter 2.",
        "- item 2",
    ]
    assert doc.metadata == {"title": "Book"}


def test_rtf() -> None:
    data = rb"{\rtf1\ansi{\fonttbl\f0 Arial;}\f0 Hello \b bold\b0  world.\par\par Second para.}"
    assert sniff_content_type(data, "x.txt") == RTF
    texts = [b.text for b in parse_bytes(data).blocks]
    assert texts[0].startswith("Hello bold world.") and texts[-1].strip() == "Second para."


def test_eml_headers_body_and_attachment_parsed_recursively() -> None:
    data = eml_bytes(xlsx_bytes())
    assert sniff_content_type(data, None) == EML
    doc = parse_bytes(data)
    assert doc.blocks[0].kind == "heading" and doc.blocks[0].text == "Quarterly figures"
    assert "From: Ana <ana@example.com>" in doc.blocks[1].text
    assert any(b.text.startswith("the figures are attached") for b in doc.blocks)
    assert any(b.text == "Attachment: a.xlsx" for b in doc.blocks)
    assert any(b.kind == "table" and "apple" in b.text for b in doc.blocks)


def test_eml_nesting_is_capped() -> None:
    data = eml_bytes()
    for _ in range(6):
        data = eml_bytes(data, name="inner.eml")
    with pytest.raises(CorruptDocument, match="nested deeper"):
        parse_bytes(data)


def test_legacy_office_refused_with_the_fix() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)
    with pytest.raises(UnsupportedDocument, match=r"save it as \.docx, \.xlsx or \.pptx"):
        parse_bytes(ole)
    # A Word stream name makes it a .doc for antiword, which refuses this garbage.
    word = ole + "WordDocument".encode("utf-16-le") + bytes(512)
    assert sniff_content_type(word) == "application/msword"
    with pytest.raises((CorruptDocument, UnsupportedDocument)):
        parse_document(word, filename=None, timeout_s=30, memory_mb=512)


# Hostile input


def test_zip_bomb_is_refused_before_inflating() -> None:
    bomb = _zip({"ppt/presentation.xml": b"<p/>", "ppt/slides/x.xml": b"\0" * (2 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    with pytest.raises(CorruptDocument, match="zip bomb"):
        parse_bytes(bomb)


def test_member_lying_about_its_size_is_capped_by_bytes_read() -> None:
    from ragstream.parsing.safezip import SafeZip

    package = SafeZip(_zip({"a": b"x" * 100_000}), "X", max_member=10_000)
    with pytest.raises(CorruptDocument, match="inflates past"):
        package.read("a")


def test_billion_laughs_and_external_entities_are_refused() -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;'
        '&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        f"<office:document-content {ODF_NS}><office:body><office:text><text:p>&c;</text:p>"
        "</office:text></office:body></office:document-content>"
    )
    with pytest.raises(CorruptDocument, match="entity"):
        parse_bytes(_zip({"content.xml": laughs}, stored_first=ODT))
    external = laughs.replace(
        '<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c '
        '"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">',
        '<!ENTITY c SYSTEM "file:///etc/passwd">',
    )
    with pytest.raises(CorruptDocument, match="entity"):
        parse_bytes(_zip({"content.xml": external}, stored_first=ODT))


def _xlsx(rows: str, shared: str = "") -> bytes:
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    return _zip(
        {
            "xl/workbook.xml": f'<workbook {ns} xmlns:r="{rel}"><sheets>'
            '<sheet name="S" r:id="rId1"/></sheets></workbook>',
            "xl/_rels/workbook.xml.rels": '<Relationships xmlns="http://schemas.openxmlformats.'
            'org/package/2006/relationships"><Relationship Id="rId1" Type="x/worksheet" '
            'Target="sheet1.xml"/></Relationships>',
            "xl/sharedStrings.xml": f"<sst {ns}>{shared}</sst>",
            "xl/sheet1.xml": f"<worksheet {ns}><sheetData>{rows}</sheetData></worksheet>",
        }
    )


def test_shared_strings_amplification_is_capped() -> None:
    from ragstream.parsing import ooxml

    big = "A" * 100_000
    rows = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>' for r in range(1, 400))
    data = _xlsx(rows, f"<si><t>{big}</t></si>")
    assert len(data) < 64 * 1024
    original = ooxml.MAX_SHEET_CHARS
    ooxml.MAX_SHEET_CHARS = 1024 * 1024
    try:
        with pytest.raises(CorruptDocument, match="MiB of cell text"):
            parse_bytes(data)
    finally:
        ooxml.MAX_SHEET_CHARS = original


def test_ods_repeated_rows_are_capped() -> None:
    ods = _odf(
        ODS,
        '<office:spreadsheet><table:table table:name="S">'
        '<table:table-row table:number-rows-repeated="1000000"><table:table-cell '
        'table:number-columns-repeated="1000"><text:p>x</text:p></table:table-cell>'
        "</table:table-row></table:table></office:spreadsheet>",
    )
    with pytest.raises(CorruptDocument, match="cells"):
        parse_bytes(ods)


def test_truncated_and_mislabelled() -> None:
    data = pptx_bytes()
    with pytest.raises((CorruptDocument, UnsupportedDocument)):
        parse_bytes(data[: len(data) // 2])
    # Named .pptx but a spreadsheet: the content decides.
    assert parse_bytes(xlsx_bytes(), "deck.pptx").content_type == XLSX


def test_formats_through_the_sandbox() -> None:
    doc = parse_document(pptx_bytes(), filename=None, timeout_s=30, memory_mb=512)
    assert doc.content_type == PPTX and doc.blocks[0].text == "Slide title 1"
    with pytest.raises(CorruptDocument, match="zip bomb"):
        parse_document(
            _zip({"xl/workbook.xml": b"<w/>", "xl/s.xml": b"\0" * (2 * 1024 * 1024)}),
            filename=None,
            timeout_s=30,
            memory_mb=512,
        )


# Files the corpus of real samples showed going wrong


def _compound_file(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE2 compound file (version 3) holding up to three streams under 4 KiB,
    so all of them in its mini stream, the way Word stores a short document. Sectors:
    0 the FAT, 1 the directory, 2 the mini FAT, 3 on the mini stream."""
    free, end, fat_sector = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
    assert len(streams) <= 3
    mini, mini_fat, entries = bytearray(), [], []
    for name, data in streams.items():
        assert len(data) < 4096
        start, count = len(mini) // 64, max(1, -(-len(data) // 64))
        mini += data.ljust(count * 64, b"\0")
        mini_fat += [start + i + 1 for i in range(count - 1)] + [end]
        entries.append((name, 2, start, len(data)))
    sectors = -(-len(mini) // 512)
    fat = [fat_sector, end, end] + [4 + i for i in range(sectors - 1)] + [end]

    def entry(name: str, kind: int, start: int, size: int, child: int, right: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le")
        return struct.pack(
            "<64sHBBIII16sI16sII",
            encoded,
            len(encoded),
            kind,
            1,  # black
            free,
            right,
            child,
            bytes(16),
            0,
            bytes(16),
            start,
            size,
        ) + bytes(4)

    directory = entry("Root Entry", 5, 3, len(mini), 1, free)
    for i, (name, kind, start, size) in enumerate(entries, start=1):
        directory += entry(name, kind, start, size, free, i + 1 if i < len(entries) else free)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        bytes(16),
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        bytes(6),
        0,
        1,  # FAT sectors
        1,  # first directory sector
        0,
        4096,
        2,  # first mini FAT sector
        1,
        end,
        0,
    ) + struct.pack("<109I", 0, *[free] * 108)

    def sector(words: list[int]) -> bytes:
        return struct.pack(f"<{len(words)}I", *words).ljust(512, b"\xff")

    return (
        header
        + sector(fat)
        + directory.ljust(512, b"\0")
        + sector(mini_fat)
        + bytes(mini).ljust(sectors * 512, b"\0")
    )


def _word6(text: bytes, lid: int) -> bytes:
    """A Word 6/95 ``WordDocument`` stream: the file information block, then the text."""
    fib = bytearray(0x300)
    struct.pack_into("<HHHH", fib, 0, 0xA5DC, 101, 0, lid)
    struct.pack_into("<II", fib, 0x18, len(fib), len(fib) + len(text))
    struct.pack_into("<i", fib, 0x34, len(text))
    return bytes(fib) + text


def _word97(text: str) -> tuple[bytes, bytes]:
    """Word 97 ``WordDocument`` and ``1Table`` streams: one piece of 8-bit text."""
    fib = bytearray(0x400)
    struct.pack_into("<HHHHH", fib, 0, 0xA5EC, 193, 0, 0x0409, 0)
    struct.pack_into("<H", fib, 0x0A, 0x0200)  # the table stream is 1Table
    struct.pack_into("<i", fib, 0x4C, len(text))
    pcd = struct.pack("<HIH", 0, (len(fib) * 2) | 0x40000000, 0)
    plc = struct.pack("<II", 0, len(text)) + pcd
    clx = b"\x01" + struct.pack("<H", 2) + b"\0\0" + b"\x02" + struct.pack("<I", len(plc)) + plc
    struct.pack_into("<II", fib, 0x01A2, 0, len(clx))
    return bytes(fib) + text.encode("cp1252"), clx


def test_small_word_documents_antiword_refuses_are_read() -> None:
    """antiword cannot read a WordDocument stream kept in the mini stream (under 4 KiB);
    the document is read here instead, not refused."""
    russian = ["Привет, мир.", "Второй абзац."]
    text = "".join(f"{paragraph}\r" for paragraph in russian).encode("cp1251")
    doc6 = _compound_file({"WordDocument": _word6(text, 0x0419)})
    assert sniff_content_type(doc6, "letter.doc") == "application/msword"
    parsed = parse_bytes(doc6)
    assert parsed.parser == "doc-small"
    assert [b.text for b in parsed.blocks] == russian

    body = 'Intro line.\r\x13 HYPERLINK "x" \x14the link\x15 here.\rName\x07Value\x07\x07'
    word, table = _word97(body)
    doc97 = _compound_file({"WordDocument": word, "1Table": table})
    parsed = parse_document(doc97, filename=None, timeout_s=30, memory_mb=512)
    texts = [b.text for b in parsed.blocks]
    assert texts == ["Intro line.", "the link here.", "Name\tValue"]

    encrypted = bytearray(_word6(b"secret\r", 0x0409))
    struct.pack_into("<H", encrypted, 0x0A, 0x0100)
    with pytest.raises(CorruptDocument, match="encrypted"):
        parse_bytes(_compound_file({"WordDocument": bytes(encrypted)}))


WORDML_DOC = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<?mso-application progid="Word.Document"?>
<w:wordDocument xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml"
    xmlns:wx="http://schemas.microsoft.com/office/word/2003/auxHint">
  <w:styles><w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/>
  </w:style></w:styles>
  <w:body><wx:sect>
    <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Broker settings</w:t></w:r></w:p>
    <w:p><w:r><w:t>Set these </w:t></w:r><w:r><w:instrText>PAGE</w:instrText>
      <w:t>before starting.</w:t></w:r></w:p>
    <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Key</w:t></w:r></w:p></w:tc>
      <w:tc><w:p><w:r><w:t>Value</w:t></w:r></w:p></w:tc></w:tr>
      <w:tr><w:tc><w:p><w:r><w:t>acks</w:t></w:r></w:p></w:tc>
      <w:tc><w:p><w:r><w:t>all</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
    <w:p><w:r><w:t>Inside:</w:t></w:r><w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p>
      </w:tc><w:tc><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:p>
  </wx:sect></w:body>
</w:wordDocument>"""


def test_word_2003_xml_named_doc_is_read() -> None:
    """Word 2003 XML renamed .doc (a real Tika fixture does this) is a Word document,
    not an unknown XML file; its entities are refused like any package XML."""
    data = WORDML_DOC.encode("utf-8")
    assert sniff_content_type(data, "report.doc") == "application/vnd.ms-wordml"
    document = parse_bytes(data, "report.doc")
    assert [(b.kind, b.text) for b in document.blocks] == [
        ("heading", "Broker settings"),
        ("paragraph", "Set these before starting."),
        ("table", "| Key | Value |\n|---|---|\n| acks | all |"),
        ("paragraph", "Inside:"),
        ("table", "| a | b |\n|---|---|"),
    ]
    assert document.blocks[1].heading_path == ("Broker settings",)
    laughs = WORDML_DOC.replace(
        "<w:wordDocument", '<!DOCTYPE w [<!ENTITY a "lol">]><w:wordDocument', 1
    ).replace("Key", "&a;")
    with pytest.raises(CorruptDocument, match="entity"):
        parse_bytes(laughs.encode("utf-8"))
    # Other XML stays refused.
    with pytest.raises(UnsupportedDocument, match="XML document"):
        parse_bytes(b'<?xml version="1.0"?><catalog><book>x</book></catalog>')


def _without_central_directory(data: bytes) -> bytes:
    return data[: data.index(b"PK\x01\x02")]


def test_packages_cut_before_their_directory_are_corrupt_not_unsupported() -> None:
    """A ZIP without its central directory still names its parts: the error says the
    file is a damaged EPUB/ODT/PPTX/XLSX, not an unsupported ZIP archive."""
    odt = _odf(ODT, "<office:text><text:p>x</text:p></office:text>")
    for data, kind in ((epub_bytes(), "EPUB"), (odt, "ODT"), (pptx_bytes(), "PPTX")):
        with pytest.raises(CorruptDocument, match=f"{kind} is corrupt or truncated"):
            parse_bytes(_without_central_directory(data))
    with pytest.raises(CorruptDocument, match="XLSX is corrupt or truncated"):
        parse_bytes(_without_central_directory(xlsx_bytes()))
    with pytest.raises(UnsupportedDocument, match="a ZIP archive"):
        parse_bytes(_without_central_directory(_zip({"notes.txt": "plain"})))


def test_legacy_binary_office_files_are_told_apart() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)

    def named(*streams: str) -> bytes:
        return ole + b"".join(s.encode("utf-16-le") + bytes(2) for s in streams)

    assert sniff_content_type(named("PowerPoint Document", "Current User")) == PPT
    # An Outlook message that attaches a Word document is the message (tests/unit/test_msg.py).
    assert sniff_content_type(named("__substg1.0_0037001F", "WordDocument")) == MSG
    with pytest.raises(CorruptDocument, match="MSG is corrupt or truncated"):
        parse_bytes(named("__substg1.0_0037001F", "WordDocument"))
    # A Word file with an embedded workbook is Word; a workbook with a slide is Excel.
    assert sniff_content_type(named("WordDocument", "ObjectPool", "Workbook")) == (
        "application/msword"
    )
    assert sniff_content_type(named("Workbook", "PowerPoint Document")) == (
        "application/vnd.ms-excel"
    )


def _ppt(*slides: tuple[str, ...]) -> bytes:
    """A PowerPoint 97-2003 file: a SlideListWithText with one SlidePersistAtom per
    slide, each followed by its texts (title first), as PowerPoint writes them."""

    def record(kind: int, body: bytes, version: int = 0) -> bytes:
        return struct.pack("<HHI", version, kind, len(body)) + body

    texts = b""
    for slide in slides:
        texts += record(0x03F3, bytes(20))  # SlidePersistAtom: a new slide
        for i, text in enumerate(slide):
            texts += record(0x0F9F, struct.pack("<I", 0 if i == 0 else 1))  # title, body
            if text.isascii():
                texts += record(0x0FA8, text.encode("latin-1"))  # TextBytesAtom
            else:
                texts += record(0x0FA0, text.encode("utf-16-le"))  # TextCharsAtom
    document = record(0x03E9, bytes(40)) + record(0x0FF0, texts, version=0xF)
    stream = record(0x03E8, document, version=0xF)
    return _compound_file({"PowerPoint Document": stream, "Current User": bytes(20)})


def test_legacy_ppt_slides_become_pages_with_their_titles_as_headings() -> None:
    data = _ppt(
        ("Harbour tides", "Spring tides peak two days after the full moon \u2013 \u00fcber"),
        ("Lock gates", "The keeper opens the upper gates.", "Then the lower ones."),
    )
    document = parse_document(data, filename="deck.ppt", timeout_s=30, memory_mb=512)
    assert document.content_type == PPT and document.parser == "catppt"
    assert document.page_count == 2
    assert [(b.kind, b.text, b.page) for b in document.blocks] == [
        ("heading", "Harbour tides", 1),
        ("paragraph", "Spring tides peak two days after the full moon \u2013 \u00fcber", 1),
        ("heading", "Lock gates", 2),
        ("paragraph", "The keeper opens the upper gates.", 2),
        ("paragraph", "Then the lower ones.", 2),
    ]
    assert document.blocks[3].heading_path == ("Lock gates",)


def test_a_ppt_without_text_fails_with_the_fix() -> None:
    with pytest.raises(CorruptDocument, match=r"no extractable text .* save it as \.pptx"):
        parse_bytes(_ppt())
