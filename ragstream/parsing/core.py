"""In-process parsing: sniff the type, then run the one parser that fits.

Parser modules are imported only when their type shows up, so the sandbox
child pays for loading PDFium, lxml or python-docx only when it needs them.
Hostile input should go through :func:`ragstream.parsing.parse_document`,
which runs this in a limited subprocess.
"""

from __future__ import annotations

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.sniff import (
    DOC,
    DOCX,
    EML,
    EPUB,
    HTML,
    JPEG,
    MARKDOWN,
    MSG,
    ODP,
    ODS,
    ODT,
    PDF,
    PNG,
    PPT,
    PPTX,
    RTF,
    TEXT,
    TIFF,
    WORDML,
    XLS,
    XLSX,
    Sniffed,
    sniff,
)

NO_TEXT = "no extractable text"
TOO_DEEP = "document is nested too deeply to parse"


def parse_bytes(
    data: bytes, filename: str | None = None, pages: tuple[int, int] | None = None
) -> ParsedDocument:
    """Parse ``data`` in this process; ``filename`` only breaks Markdown/text ties.

    ``pages`` (first, last) parses only those pages of a PDF: one part of a
    document parsed in parts, which may have no text of its own.
    """
    sniffed = sniff(data, filename)
    try:
        document = _dispatch(sniffed, data, pages)
    except RecursionError:
        raise CorruptDocument(TOO_DEEP) from None
    if not document.blocks and (pages is None or sniffed.content_type != PDF):
        raise CorruptDocument(NO_TEXT)
    return document


def _dispatch(sniffed: Sniffed, data: bytes, pages: tuple[int, int] | None) -> ParsedDocument:
    content_type = sniffed.content_type
    if content_type == PDF:
        from ragstream.parsing.pdf import parse_pdf

        return parse_pdf(data, pages)
    if content_type == DOCX:
        from ragstream.parsing.docx import parse_docx

        return parse_docx(data)
    if content_type == HTML:
        from ragstream.parsing.html import parse_html

        return parse_html(data)
    if content_type == MARKDOWN:
        from ragstream.parsing.markdown import parse_markdown

        return parse_markdown(sniffed.text or "", encoding=sniffed.encoding)
    if content_type == TEXT:
        from ragstream.parsing.text import parse_text

        return parse_text(sniffed.text or "", encoding=sniffed.encoding)
    if content_type in (PNG, JPEG, TIFF):
        from ragstream.parsing.image import parse_image

        return parse_image(data, content_type)
    return _dispatch_office(content_type, data)


def _dispatch_office(content_type: str, data: bytes) -> ParsedDocument:
    """Office, e-book and e-mail formats."""
    if content_type == PPTX:
        from ragstream.parsing.ooxml import parse_pptx

        return parse_pptx(data)
    if content_type == XLSX:
        from ragstream.parsing.ooxml import parse_xlsx

        return parse_xlsx(data)
    if content_type in (ODT, ODS, ODP):
        from ragstream.parsing.odf import parse_odf

        return parse_odf(data, content_type)
    if content_type == EPUB:
        from ragstream.parsing.epub import parse_epub

        return parse_epub(data)
    if content_type == RTF:
        from ragstream.parsing.rtf import parse_rtf

        return parse_rtf(data)
    if content_type == DOC:
        from ragstream.parsing.doc import parse_doc

        return parse_doc(data)
    if content_type == PPT:
        from ragstream.parsing.ppt import parse_ppt

        return parse_ppt(data)
    if content_type == XLS:
        from ragstream.parsing.xls import parse_xls

        return parse_xls(data)
    if content_type == EML:
        from ragstream.parsing.mail import parse_eml

        return parse_eml(data)
    if content_type == MSG:
        from ragstream.parsing.msg import parse_msg

        return parse_msg(data)
    if content_type == WORDML:
        from ragstream.parsing.wordml import parse_wordml

        return parse_wordml(data)
    raise AssertionError(f"no parser for {content_type}")
