"""Legacy PowerPoint (.ppt/.pps, 97-2003) through Debian's ``catppt`` (package ``catdoc``).

catppt prints each slide's text, slides separated by a form feed: a slide's
first line (its title, as PowerPoint stores it first) becomes a heading and the
slide number its page. Pictures carry no text; PowerPoint 95 and older files give
none, and such a file fails with "no extractable text" and the fix. Without
catppt the file is refused with the fix in the message.
"""

from __future__ import annotations

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.tool import run_tool

PPT = "application/vnd.ms-powerpoint"
PARSER = "catppt"
PARSER_VERSION = "catdoc/0.95"
TIMEOUT_S = 30.0
SAVE_AS = "save it as .pptx"
NOT_INSTALLED = (
    "unsupported document type (a legacy binary PowerPoint presentation (.ppt/.pps), and "
    f"catppt from the catdoc package is not installed); {SAVE_AS}"
)
NO_TEXT = (
    "no extractable text (pictures only, or PowerPoint 95 or older, which catppt does not "
    f"read); {SAVE_AS}"
)


def parse_ppt(data: bytes) -> ParsedDocument:
    out = run_tool(
        "catppt",
        ["-d", "utf-8"],
        data,
        timeout_s=TIMEOUT_S,
        missing=NOT_INSTALLED,
        what="PPT",
    ).decode("utf-8", "replace")
    slides = out.split("\f")
    if slides and not slides[-1].strip():
        slides.pop()  # the form feed after the last slide
    builder = BlockBuilder()
    for number, slide in enumerate(slides, start=1):
        lines = [" ".join(line.split()) for line in slide.splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        builder.heading(lines[0], 1, page=number)
        for line in lines[1:]:
            builder.paragraph(line, page=number)
    if not builder.blocks:
        raise CorruptDocument(NO_TEXT)
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=PPT,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        page_count=len(slides),
    )
