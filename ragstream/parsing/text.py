"""Plain text to paragraphs.

Plain text has no structure beyond blank lines, so that is all it is split
on; line breaks inside a paragraph are kept because they often carry meaning
(addresses, verse, tables drawn with spaces). Splitting an enormous paragraph
is the chunker's job, not this one's.
"""

from __future__ import annotations

from ragstream.documents import ParsedDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.sniff import TEXT

PARSER = "text"
PARSER_VERSION = "ragstream-text/1"


def parse_text(text: str, *, encoding: str | None = None) -> ParsedDocument:
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    builder = BlockBuilder()
    paragraph: list[str] = []
    for line in normalized.split("\n"):
        if line.strip():
            paragraph.append(line.rstrip())
        elif paragraph:
            builder.paragraph("\n".join(paragraph))
            paragraph.clear()
    if paragraph:
        builder.paragraph("\n".join(paragraph))
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=TEXT,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        metadata={"encoding": encoding} if encoding else {},
    )
