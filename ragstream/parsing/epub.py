"""EPUB: chapters in spine order, headings from the XHTML, read through :mod:`safezip`."""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import unquote

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.safezip import SafeZip, local_name, text_of

EPUB = "application/epub+zip"
PARSER = "epub"
PARSER_VERSION = "1"

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SKIP = {"script", "style", "head", "nav"}


def _walk(builder: BlockBuilder, element: Any, depth: int = 0) -> None:
    for child in element:
        name = local_name(child).lower()
        if name in _SKIP:
            continue
        if name in _HEADINGS:
            builder.heading(" ".join(text_of(child).split()), _HEADINGS[name])
        elif name in ("p", "pre", "blockquote", "dt", "dd", "figcaption"):
            builder.paragraph(text_of(child))
        elif name == "li":
            builder.paragraph("- " + " ".join(text_of(child).split()))
        elif name == "table":
            rows = [
                [text_of(cell) for cell in tr if local_name(cell).lower() in ("td", "th")]
                for tr in child.iter("{*}tr", "tr")
            ]
            builder.table(rows)
        elif depth < 100:
            _walk(builder, child, depth + 1)
            if child.tail and child.tail.strip() and name not in ("br",):
                builder.paragraph(child.tail)


def parse_epub(data: bytes) -> ParsedDocument:
    package = SafeZip(data, "EPUB")
    container = package.xml("META-INF/container.xml")
    rootfile = next(container.iter("{*}rootfile"), None)
    if rootfile is None or not rootfile.get("full-path"):
        raise CorruptDocument("EPUB is corrupt: container.xml names no package file")
    opf_name = rootfile.get("full-path")
    opf = package.xml(opf_name)
    folder = posixpath.dirname(opf_name)
    manifest = {
        item.get("id"): posixpath.normpath(posixpath.join(folder, unquote(item.get("href") or "")))
        for item in opf.iter("{*}item")
    }
    builder = BlockBuilder()
    for ref in opf.iter("{*}itemref"):
        name = manifest.get(ref.get("idref"))
        if name is None or name not in package:
            continue
        chapter = package.xml(name)
        body = next(chapter.iter("{*}body"), chapter)
        _walk(builder, body)
    title = next((text_of(t).strip() for t in opf.iter("{*}title")), "")
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=EPUB,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        metadata={"title": title} if title else {},
    )
