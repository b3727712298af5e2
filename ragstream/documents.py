"""The parsed form of a document, shared by the parse and chunk stages.

A parser turns bytes into a :class:`ParsedDocument`: an ordered list of blocks,
each knowing its page and the headings above it. The chunker reads only this,
so page numbers and heading paths survive into every chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import IO, Any, Literal

# "table": the text is a Markdown table (header row, separator row, body rows, one row
# per line); the chunker keeps rows whole and repeats the header in each piece.
# "ocr": a paragraph read off an image by OCR (the lineage names the engine).
BlockKind = Literal["heading", "paragraph", "table", "ocr"]


@dataclass(frozen=True)
class Block:
    """One heading, paragraph, table or OCR-read paragraph of text."""

    text: str
    kind: BlockKind = "paragraph"
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    level: int = 0  # heading level (1 = top) for headings, 0 for paragraphs


@dataclass(frozen=True)
class ParsedDocument:
    """What a parser produced, with the lineage the chunk rows record."""

    blocks: tuple[Block, ...]
    content_type: str
    parser: str
    parser_version: str
    page_count: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)

    def to_json(self) -> bytes:
        """The same JSON as ``dataclasses.asdict`` gives, without its deep copies (several
        times faster, and a large document is not held twice more while it is encoded)."""
        payload: dict[str, Any] = {
            "blocks": [
                {
                    "text": b.text,
                    "kind": b.kind,
                    "page": b.page,
                    "heading_path": b.heading_path,
                    "level": b.level,
                }
                for b in self.blocks
            ],
            "content_type": self.content_type,
            "parser": self.parser,
            "parser_version": self.parser_version,
            "page_count": self.page_count,
            "metadata": self.metadata,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ParsedDocument:
        raw = json.loads(data)
        blocks = tuple(
            Block(
                text=b["text"],
                kind=b["kind"],
                page=b["page"],
                heading_path=tuple(b["heading_path"]),
                level=b["level"],
            )
            for b in raw["blocks"]
        )
        return cls(
            blocks=blocks,
            content_type=raw["content_type"],
            parser=raw["parser"],
            parser_version=raw["parser_version"],
            page_count=raw["page_count"],
            metadata=dict(raw.get("metadata") or {}),
        )


@dataclass(frozen=True, kw_only=True)
class ParsedSummary:
    """What is stored and announced of a parsed document besides its blocks."""

    content_type: str
    parser: str
    parser_version: str
    page_count: int | None
    block_count: int
    metadata: dict[str, str] = field(default_factory=dict)

    def summary_fields(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(ParsedSummary)}
        values["metadata"] = dict(self.metadata)  # a copy: the summaries share nothing
        return values

    def summary(self) -> bytes:
        return json.dumps(self.summary_fields()).encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class ParsedPayload(ParsedSummary):
    """A parsed document as stored: its JSON (``ParsedDocument.to_json``) and a summary.

    What the parse stage needs to store and announce a document, without holding
    its blocks as Python objects: a large document stays one buffer.
    """

    payload: bytes

    @classmethod
    def of(cls, document: ParsedDocument) -> ParsedPayload:
        return cls(
            payload=document.to_json(),
            content_type=document.content_type,
            parser=document.parser,
            parser_version=document.parser_version,
            page_count=document.page_count,
            block_count=len(document.blocks),
            metadata=dict(document.metadata),
        )

    @classmethod
    def from_summary(cls, summary: bytes, payload: bytes) -> ParsedPayload:
        return cls(payload=payload, **json.loads(summary))

    def document(self) -> ParsedDocument:
        return ParsedDocument.from_json(self.payload)


@dataclass(frozen=True, kw_only=True)
class SpooledPayload(ParsedSummary):
    """A :class:`ParsedPayload` whose JSON is in a temporary file: a document too large to hold.

    Its owner closes it (``with``); the file goes with it.
    """

    file: IO[bytes]
    size: int

    @classmethod
    def from_summary(cls, summary: bytes, file: IO[bytes], size: int) -> SpooledPayload:
        return cls(file=file, size=size, **json.loads(summary))

    def load(self) -> ParsedPayload:
        """The same in memory."""
        self.file.seek(0)
        return ParsedPayload(payload=self.file.read(self.size), **self.summary_fields())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> SpooledPayload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
