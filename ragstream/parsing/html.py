"""HTML to blocks with BeautifulSoup and lxml.

The tree is walked with an explicit stack, never by recursion: hostile pages
nest elements hundreds of thousands deep, and a recursive walk would die with
RecursionError (or overflow the C stack) long before running out of input.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version

from bs4 import BeautifulSoup
from bs4.element import CData, NavigableString, PageElement, Tag

from ragstream.documents import ParsedDocument
from ragstream.parsing.blocks import BlockBuilder, collapse_whitespace
from ragstream.parsing.sniff import HTML

PARSER = "html"

# Never visible text, or not text at all.
_SKIP = frozenset(
    {
        "head",
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "math",
        "iframe",
        "object",
        "embed",
        "canvas",
        "select",
    }
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Elements whose start and end close the paragraph being collected.
_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)


@cache
def parser_version() -> str:
    return f"beautifulsoup4/{version('beautifulsoup4')}+lxml/{version('lxml')}"


def parse_html(data: bytes) -> ParsedDocument:
    soup = BeautifulSoup(data, "lxml")
    builder = BlockBuilder()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            text = "".join(pending)
            pending.clear()
            lines = (collapse_whitespace(line) for line in text.split("\n"))
            builder.paragraph("\n".join(line for line in lines if line))

    # (node, False) visits a node; (node, True) marks leaving a block element.
    stack: list[tuple[PageElement, bool]] = [(soup, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            flush()
            continue
        if isinstance(node, NavigableString):
            if type(node) is NavigableString or type(node) is CData:
                pending.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if name in _SKIP:
            continue
        if name in _HEADINGS:
            flush()
            builder.heading(collapse_whitespace(node.get_text()), _HEADINGS[name])
            continue
        if name in ("pre", "textarea"):
            flush()
            builder.paragraph(node.get_text().strip("\n"))
            continue
        if name == "table":
            flush()
            _table(builder, node)
            continue
        if name == "br":
            pending.append("\n")
            continue
        if name in _BLOCKS:
            flush()
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    flush()

    metadata: dict[str, str] = {}
    title = soup.title
    if title is not None:
        title_text = collapse_whitespace(title.get_text())
        if title_text:
            metadata["title"] = title_text
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=HTML,
        parser=PARSER,
        parser_version=parser_version(),
        metadata=metadata,
    )


def _table(builder: BlockBuilder, table: Tag) -> None:
    """A table as a Markdown table block; its caption first, as a paragraph.

    The header is the first row made only of ``th`` cells, else the first row.
    Tables nested in a cell are that cell's text: Markdown has no nested tables.
    """
    rows: list[list[str]] = []
    header: int | None = None
    caption = ""
    stack: list[PageElement] = list(reversed(table.contents))
    while stack:
        node = stack.pop()
        if not isinstance(node, Tag) or node.name in _SKIP or node.name == "table":
            continue
        if node.name == "caption":
            caption = collapse_whitespace(node.get_text(" "))
            continue
        if node.name != "tr":
            stack.extend(reversed(node.contents))
            continue
        cells = [c for c in node.children if isinstance(c, Tag) and c.name in ("td", "th")]
        if not cells:
            continue
        if header is None and all(c.name == "th" for c in cells):
            header = len(rows)
        rows.append([collapse_whitespace(c.get_text(" ")) for c in cells])
    if header:
        rows.insert(0, rows.pop(header))
    if caption:
        builder.paragraph(caption)
    builder.table(rows)
