"""E-mail (RFC 822 / MIME, ``.eml``): headers as a heading, text parts, and attachments
of supported types parsed recursively, to a fixed depth. Outlook messages
(:mod:`ragstream.parsing.msg`) share the attachment rules."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument, UnsupportedDocument
from ragstream.parsing.blocks import MAX_HEADING_LEVEL, BlockBuilder
from ragstream.parsing.charset import decode_text

EML = "message/rfc822"
PARSER = "email"
PARSER_VERSION = "stdlib/1"
MAX_DEPTH = 3
MAX_PARTS = 500


def parse_eml(data: bytes, depth: int = 0) -> ParsedDocument:
    from ragstream.parsing.html import parse_html

    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage):
        raise CorruptDocument("e-mail could not be read")
    builder = BlockBuilder()
    subject = str(message.get("subject", "") or "").strip() or "(no subject)"
    builder.heading(subject, 1)
    header = [f"{key}: {message.get(key)}" for key in ("From", "To", "Date") if message.get(key)]
    if header:
        builder.paragraph("\n".join(header))
    body = message.get_body(preferencelist=("plain", "html"))
    parts = 0
    for part in message.walk():
        parts += 1
        if parts > MAX_PARTS:
            raise CorruptDocument(f"e-mail has more than {MAX_PARTS} MIME parts")
        if part.is_multipart():
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        if part is body:
            if part.get_content_type() == "text/html":
                blocks = parse_html(payload).blocks
                for block in blocks:
                    builder.paragraph(block.text)
            else:
                charset = part.get_content_charset()
                try:
                    text = payload.decode(charset or "utf-8")
                except (LookupError, UnicodeDecodeError):
                    text, _ = decode_text(payload)
                for paragraph in text.replace("\r\n", "\n").split("\n\n"):
                    builder.paragraph(paragraph)
            continue
        if filename is None and part.get_content_maintype() == "text":
            continue  # the alternative rendering of the body
        if depth >= MAX_DEPTH:
            raise CorruptDocument(f"e-mail attachments are nested deeper than {MAX_DEPTH}")
        attached = parse_attachment(payload, filename, depth)
        if attached is not None:
            append_attachment(builder, filename or part.get_content_type(), attached)
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=EML,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        metadata={"title": subject},
    )


def parse_attachment(payload: bytes, filename: str | None, depth: int) -> ParsedDocument | None:
    """An attachment's document, or None when it is of no type we read: an attachment we
    cannot read does not spoil the message. A message attached to a message, e-mail or
    Outlook, is parsed one level deeper, and its failure (too deep) fails the whole message;
    the caller checks ``depth`` against :data:`MAX_DEPTH` first."""
    from ragstream.parsing.core import parse_bytes
    from ragstream.parsing.sniff import MSG, sniff

    try:
        content_type = sniff(payload, filename).content_type
        if content_type not in (EML, MSG):
            return parse_bytes(payload, filename)
    except (UnsupportedDocument, CorruptDocument):
        return None
    if content_type == MSG:
        from ragstream.parsing.msg import parse_msg

        return parse_msg(payload, depth + 1)
    return parse_eml(payload, depth + 1)


def append_attachment(builder: BlockBuilder, name: str, attached: ParsedDocument) -> None:
    """The attachment's blocks under an ``Attachment: NAME`` heading, its own headings
    moved below that one."""
    builder.heading(f"Attachment: {name}", 2)
    for block in attached.blocks:
        if block.kind == "table":
            builder.table(_rows(block.text))
        elif block.kind == "heading":
            builder.heading(block.text, min(block.level + 2, MAX_HEADING_LEVEL))
        else:
            builder.paragraph(block.text, page=block.page)


def _rows(markdown: str) -> list[list[str]]:
    """A Markdown table block back to rows (its separator line dropped)."""
    lines = markdown.split("\n")
    rows = [line.strip().strip("|").split(" | ") for line in lines]
    return [[c.strip() for c in row] for i, row in enumerate(rows) if i != 1]
