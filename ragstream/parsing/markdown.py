"""Markdown to blocks, by lines.

Only the structure matters for retrieval (headings, paragraph boundaries,
code kept whole), so this reads just that much of CommonMark and leaves inline
markup in the text. Every step is a plain string operation on one line at a
time: no regular expression can backtrack over a multi-megabyte line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragstream.documents import ParsedDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.sniff import MARKDOWN

PARSER = "markdown"
PARSER_VERSION = "ragstream-markdown/1"

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_ATX_OPEN = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_FRONT_MATTER_MAX_LINES = 200


@dataclass
class _Fence:
    char: str
    length: int
    lines: list[str]


def parse_markdown(text: str, *, encoding: str | None = None) -> ParsedDocument:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    builder = BlockBuilder()
    paragraph: list[str] = []
    fence: _Fence | None = None

    def flush() -> None:
        if paragraph:
            builder.paragraph("\n".join(paragraph))
            paragraph.clear()

    for line in lines[_front_matter_end(lines) :]:
        if fence is not None:
            if _closes(fence, line):
                builder.paragraph("\n".join(fence.lines))
                fence = None
            else:
                fence.lines.append(line)
            continue
        opened = _FENCE.match(line)
        if opened and not (opened.group(1)[0] == "`" and "`" in line[opened.end() :]):
            flush()
            marker = opened.group(1)
            fence = _Fence(marker[0], len(marker), [])
            continue
        atx = _ATX_OPEN.match(line)
        if atx:
            flush()
            builder.heading(_atx_text(line[atx.end() :]), len(atx.group(1)))
            continue
        stripped = line.strip()
        underline = _setext_level(line, stripped)
        if underline and paragraph:
            title = " ".join(part.strip() for part in paragraph)
            paragraph.clear()
            builder.heading(title, underline)
            continue
        if not stripped or _is_thematic_break(stripped):
            flush()
            continue
        paragraph.append(line.rstrip())
    if fence is not None:  # an unclosed fence runs to the end of the document
        builder.paragraph("\n".join(fence.lines))
    flush()
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=MARKDOWN,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        metadata={"encoding": encoding} if encoding else {},
    )


def _front_matter_end(lines: list[str]) -> int:
    """Index of the first line after a leading YAML front-matter block, else 0."""
    if not lines or lines[0].strip() != "---":
        return 0
    for index in range(1, min(len(lines), _FRONT_MATTER_MAX_LINES)):
        if lines[index].strip() in ("---", "..."):
            return index + 1
    return 0


def _closes(fence: _Fence, line: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= fence.length
        and not stripped.strip(fence.char)
    )


def _atx_text(rest: str) -> str:
    """Heading text without the optional closing run of ``#``."""
    rest = rest.strip()
    without = rest.rstrip("#")
    if without != rest and (not without or without[-1] in " \t"):
        rest = without.rstrip()
    return rest


def _setext_level(line: str, stripped: str) -> int:
    if not stripped or len(line) - len(line.lstrip(" ")) > 3:
        return 0
    if not stripped.strip("="):
        return 1
    if not stripped.strip("-"):
        return 2
    return 0


def _is_thematic_break(stripped: str) -> bool:
    if stripped[0] not in "-*_":
        return False
    compact = stripped.replace(" ", "").replace("\t", "")
    return len(compact) >= 3 and not compact.strip(compact[0])
