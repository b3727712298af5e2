"""OCR with the real Tesseract: scanned PDF pages, image uploads, image-only DOCX, the
sandbox around it, and a clear failure when it is not installed."""

from __future__ import annotations

import io

import docx
import pytest
from PIL import Image, ImageDraw, ImageFont
from reportlab.pdfgen import canvas

from ragstream.consumers.parts import merge
from ragstream.documents import Block, ParsedDocument
from ragstream.errors import CorruptDocument, UnsupportedDocument
from ragstream.parsing import ocr, parse_document
from ragstream.parsing.core import parse_bytes
from ragstream.parsing.sniff import JPEG, PDF, PNG, TIFF, sniff_content_type
from ragstream.settings import Settings

pytestmark = pytest.mark.skipif(ocr._binary() is None, reason="tesseract-ocr is not installed")

FIRST = "The harbour master counts seven blue boats"
SECOND = "Every crate of lemons is weighed twice"


def scan(*lines: str) -> Image.Image:
    """Printed text as a scanner would deliver it: grey, 300 dpi, no text layer."""
    font = ImageFont.load_default(size=44)
    image = Image.new("L", (1500, 120 + 90 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 60 + 90 * i), line, fill=0, font=font)
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, dpi=(300, 300), **options)
    return out.getvalue()


def words(text: str) -> set[str]:
    return {w.strip(".,").lower() for w in text.split()}


def test_a_png_is_read_by_ocr() -> None:
    data = encode(scan(FIRST, SECOND), "PNG")
    assert sniff_content_type(data) == PNG
    document = parse_bytes(data, "photo.png")
    assert document.parser == "image+tesseract"
    assert " / tesseract 5." in document.parser_version
    assert {b.kind for b in document.blocks} == {"ocr"}
    assert words(FIRST) | words(SECOND) <= words(document.text)
    assert document.page_count == 1


def test_jpeg_and_multipage_tiff_one_page_per_frame() -> None:
    jpeg = encode(scan(FIRST).convert("RGB"), "JPEG", quality=90)
    assert sniff_content_type(jpeg) == JPEG
    assert words(FIRST) <= words(parse_bytes(jpeg).text)
    tiff = encode(scan(FIRST), "TIFF", save_all=True, append_images=[scan(SECOND)])
    assert sniff_content_type(tiff) == TIFF
    document = parse_bytes(tiff)
    assert document.page_count == 2
    by_page = {p: " ".join(b.text for b in document.blocks if b.page == p) for p in (1, 2)}
    assert words(FIRST) <= words(by_page[1]) and words(SECOND) <= words(by_page[2])


def scanned_pdf() -> bytes:
    """Page 1 has a text layer; page 2 is only an image."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(612, 792))
    pdf.drawString(72, 700, "A typed page with a real text layer.")
    pdf.showPage()
    image = scan(FIRST, SECOND)
    width, height = image.width * 72 / 300, image.height * 72 / 300  # placed at 300 dpi
    pdf.drawInlineImage(image, 36, 792 - 36 - height, width, height)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_only_pdf_pages_without_text_are_read_by_ocr() -> None:
    data = scanned_pdf()
    assert sniff_content_type(data) == PDF
    document = parse_bytes(data)
    assert document.parser == "pypdfium2+tesseract"
    assert (document.blocks[0].kind, document.blocks[0].page) == ("paragraph", 1)
    ocr_blocks = [b for b in document.blocks if b.kind == "ocr"]
    assert ocr_blocks and {b.page for b in ocr_blocks} == {2}
    assert words(FIRST) | words(SECOND) <= words(" ".join(b.text for b in ocr_blocks))


def test_an_image_only_docx_is_read_by_ocr() -> None:
    word = docx.Document()
    word.add_picture(io.BytesIO(encode(scan(FIRST), "PNG")))
    out = io.BytesIO()
    word.save(out)
    document = parse_bytes(out.getvalue(), "scan.docx")
    assert document.parser == "docx+tesseract"
    assert [b.kind for b in document.blocks] == ["ocr"]
    assert words(FIRST) <= words(document.text)


def test_ocr_runs_inside_the_confined_sandbox() -> None:
    data = encode(scan(SECOND), "PNG")
    document = parse_document(data, filename="scan.png", timeout_s=60, memory_mb=1024)
    assert words(SECOND) <= words(document.text)


def test_without_tesseract_the_failure_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocr, "_binary", lambda: None)
    with pytest.raises(UnsupportedDocument, match=r"apt-get install tesseract-ocr"):
        parse_bytes(encode(scan(FIRST), "PNG"))


def test_languages_follow_the_setting_and_must_be_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().ocr_languages == ocr.DEFAULT_LANGUAGES
    ocr.languages.cache_clear()
    try:
        monkeypatch.setenv(ocr.LANGUAGES_ENV, "eng+xx_missing")
        assert ocr.languages() == "eng"
        ocr.languages.cache_clear()
        monkeypatch.setenv(ocr.LANGUAGES_ENV, "xx_missing")
        with pytest.raises(UnsupportedDocument, match="tesseract-ocr-<lang>"):
            ocr.languages()
    finally:
        ocr.languages.cache_clear()


def test_pdf_parts_merge_keeps_ocr_blocks_and_the_ocr_lineage() -> None:
    plain = ParsedDocument((Block("typed", page=1),), PDF, "pypdfium2", "v", page_count=2)
    scanned = ParsedDocument(
        (Block("read", kind="ocr", page=2),), PDF, "pypdfium2+tesseract", "v / t", page_count=2
    )
    merged = merge([plain, scanned])
    assert [(b.kind, b.page) for b in merged.blocks] == [("paragraph", 1), ("ocr", 2)]
    assert (merged.parser, merged.parser_version) == ("pypdfium2+tesseract", "v / t")
    assert merge([plain, plain]).parser == "pypdfium2"


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n" + bytes(64), b"\xff\xd8\xff\xe0" + bytes(64), b"II*\x00junk"]
)
def test_a_broken_image_is_a_corrupt_document(data: bytes) -> None:
    with pytest.raises(CorruptDocument, match=r"^image is corrupt or truncated"):
        parse_bytes(data, "report.pdf")


HEBREW = ("שלום עולם זהו מסמך סרוק", "המסמך נכתב בעברית ונקרא בזיהוי תווים")
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian's fonts-dejavu-core


def test_a_page_in_another_script_is_read_with_that_scripts_languages() -> None:
    """Hebrew, which none of the configured languages writes: OSD names the script and
    the page is read with the installed Hebrew data, not as Latin or Cyrillic junk."""
    assert "heb" not in ocr.languages().split("+")
    font = ImageFont.truetype(DEJAVU, 44)
    image = Image.new("L", (1400, 300), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(HEBREW):
        # Drawn right to left, as a printed page shows it (Pillow draws code points left to right).
        draw.text((60, 60 + 100 * i), line[::-1], fill=0, font=font)
    text = parse_bytes(encode(image, "PNG"), "scan.png").text
    letters = [c for c in text if c.isalpha()]
    hebrew = [c for c in letters if "\u0590" <= c <= "\u05ff"]
    assert len(hebrew) >= 0.9 * len(letters) and len(hebrew) >= 40, text
    found = set(text.split()) | {w[::-1] for w in text.split()}  # either reading order
    assert {"שלום", "עולם", "מסמך", "בעברית"} <= found, text


def test_a_page_on_its_side_is_turned_upright_before_it_is_read() -> None:
    lines = (FIRST, SECOND, "The ferry leaves the quay at nine sharp")
    sideways = scan(*lines).rotate(90, expand=True, fillcolor=255)
    document = parse_bytes(encode(sideways, "PNG"), "sideways.png")
    assert words(FIRST) | words(SECOND) <= words(document.text), document.text


def test_the_osd_report_is_read_and_a_script_maps_to_installed_languages() -> None:
    report = (
        "Page number: 0\nOrientation in degrees: 270\nRotate: 90\n"
        "Orientation confidence: 3.85\nScript: Hebrew\nScript confidence: 3.33\n"
    )
    assert ocr.parse_osd(report) == ocr.Osd(90, 3.85, "Hebrew", 3.33)
    assert ocr.parse_osd("Too few characters. Skipping this page") is None
    assert ocr.languages_for("Hebrew", "eng+deu") == "heb+eng"
    assert ocr.languages_for("Latin", "eng+deu") == "eng+deu"
    assert ocr.languages_for("Cyrillic", "eng+rus") == "eng+rus"  # configured already
    assert ocr.languages_for("Tibetan", "eng+deu") == "eng+deu"  # none installed
    assert ocr.languages_for("Korean", "eng+deu") == "kor+eng"  # OSD's name for Hangul and Han


def test_a_paragraph_in_another_script_on_a_latin_page_is_read_in_that_script() -> None:
    """A page OSD calls Latin, with a Hebrew paragraph between English ones: the
    configured languages read that paragraph with low confidence, so it is looked at on
    its own and read with Hebrew, while the English around it stays as it was."""
    font = ImageFont.truetype(DEJAVU, 40)
    english = (FIRST, SECOND, "The ferry leaves the quay at nine sharp", "Gulls follow the boats")
    image = Image.new("L", (1400, 760), 255)
    draw = ImageDraw.Draw(image)
    hebrew_rows = [(HEBREW[0][::-1], 290), (HEBREW[1][::-1], 360)]
    rows = [(english[0], 60), (english[1], 130), *hebrew_rows]
    rows += [(english[2], 520), (english[3], 590)]
    for line, y in rows:
        draw.text((60, y), line, fill=0, font=font)
    text = parse_bytes(encode(image, "PNG"), "screenshot.png").text
    assert all(words(line) <= words(text) for line in english), text
    hebrew = [c for c in text if "\u0590" <= c <= "\u05ff"]
    assert len(hebrew) >= 40, text
    found = set(text.split()) | {w[::-1] for w in text.split()}
    assert {"שלום", "עולם", "סרוק", "בעברית"} <= found, text
    # In reading order: the Hebrew between the two English paragraphs.
    first_hebrew = text.index(hebrew[0])
    assert text.index("twice") < first_hebrew < text.index("ferry"), text


def test_the_word_report_gives_paragraphs_with_their_confidence_and_the_pages_spacing() -> None:
    """The ``tsv`` report splits Korean words into syllables; each line's text comes
    from the ``txt`` report after it, which keeps the page's spacing."""
    header = "\t".join(
        [
            "level",
            "page_num",
            "block_num",
            "par_num",
            "line_num",
            "word_num",
            "left",
            "top",
            "width",
            "height",
            "conf",
            "text",
        ]
    )
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t10\t40\t20\t96.0\tRULES",
        "5\t1\t1\t1\t1\t2\t60\t10\t40\t20\t94.0\tAPPLY",
        "5\t1\t2\t1\t1\t1\t10\t60\t20\t20\t50.0\t저",
        "5\t1\t2\t1\t1\t2\t30\t60\t20\t20\t60.0\t희",
        "5\t1\t2\t1\t1\t3\t50\t60\t20\t20\t70.0\t는",
        "5\t1\t2\t1\t2\t1\t10\t90\t30\t20\t-1\t ",
        "5\t1\t2\t1\t2\t2\t10\t90\t30\t22\t40.0\t그룹",
    ]
    report = "\n".join([header, *rows, "RULES APPLY", "", "저희는", "그룹", "\f"])
    first, second = ocr.parse_report(report)
    assert first.lines == ["RULES APPLY"] and first.confidence == 95.0 and first.words == 2
    assert second.lines == ["저희는", "그룹"] and second.confidence == 55.0
    assert second.box == (10, 60, 70, 112) and second.words == 4
    # When the two reports disagree on the lines, the words are joined by spaces.
    (alone,) = ocr.parse_report("\n".join([header, *rows[2:5]]))
    assert alone.lines == ["저 희 는"]
