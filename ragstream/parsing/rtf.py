"""RTF to paragraphs with striprtf (pure Python, linear in the input)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import version

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.text import parse_text

RTF = "application/rtf"
PARSER = "rtf"


@cache
def parser_version() -> str:
    return f"striprtf/{version('striprtf')}"


def parse_rtf(data: bytes) -> ParsedDocument:
    from striprtf.striprtf import rtf_to_text

    try:
        text = rtf_to_text(data.decode("latin-1"), errors="replace")  # type: ignore[no-untyped-call]
    except (ValueError, IndexError, LookupError) as exc:
        raise CorruptDocument(f"RTF is corrupt: {exc}") from None
    plain = parse_text(text)
    return ParsedDocument(
        blocks=plain.blocks,
        content_type=RTF,
        parser=PARSER,
        parser_version=parser_version(),
    )
