"""The parsed-document JSON: its bytes are a content address, so they must not drift."""

from __future__ import annotations

import json
from dataclasses import asdict

from ragstream.documents import Block, ParsedDocument


def _sample() -> ParsedDocument:
    return ParsedDocument(
        blocks=(
            Block(text="Überblick", kind="heading", page=1, level=1),
            Block(text='Text mit "Zitat" und \\ Schrägstrich', page=1, heading_path=("Überblick",)),
            Block(text="日本語の段落", page=None, heading_path=("Überblick", "Zwei")),
        ),
        content_type="application/pdf",
        parser="pypdfium2",
        parser_version="1+x",
        page_count=3,
        metadata={"title": "T"},
    )


def test_json_is_byte_identical_to_the_dataclass_encoding() -> None:
    doc = _sample()
    reference = json.dumps(asdict(doc), ensure_ascii=False, separators=(",", ":")).encode()
    assert doc.to_json() == reference


def test_json_round_trips() -> None:
    doc = _sample()
    assert ParsedDocument.from_json(doc.to_json()) == doc
