"""Crypto-shredding: the text in events is sealed with a key of its document.

A chunk's text and headings travel in ``ChunkCreated`` (and in the DLQ copies
of it, which are the same bytes). Topics keep every record forever, for replay,
so deleting a document cannot take its text out of the log. Instead every such
field is encrypted (AES-256-GCM) with the document's own key, kept in
``document_keys`` and deleted with the document: from the commit of the delete
on, no copy of the text anywhere in Kafka can be read. A live document's
records decrypt as before, so replay keeps working.

A sealed field is a string ``rs-sealed:1:<key id hex>:<base64 of nonce and
ciphertext>``; the document id is the associated data, so a sealed text cannot
pass for another document's. A key id that is not the document's current key
(the document was deleted, maybe uploaded again since) means "shredded": the
record is skipped, not failed. Records written before sealing existed carry
plain text and are read as they are.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, literal, select
from sqlalchemy.dialects.postgresql import insert

from ragstream.db.models import Document, DocumentKey
from ragstream.schemas.events import ChunkCreated

PREFIX = "rs-sealed:1:"
_NONCE_BYTES = 12
_KEY_BYTES = 32


class Shredded(Exception):
    """The key that sealed this text is gone: its document was deleted."""


@dataclass(frozen=True)
class Key:
    document_id: uuid.UUID
    key_id: uuid.UUID
    key: bytes

    def _aad(self) -> bytes:
        return str(self.document_id).encode()

    def seal(self, text: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, text.encode(), self._aad())
        return f"{PREFIX}{self.key_id.hex}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, value: str) -> str:
        """The text of a sealed ``value``; a plain one (written before sealing) as it is."""
        if not is_sealed(value):
            return value
        key_id, _, body = value[len(PREFIX) :].partition(":")
        if key_id != self.key_id.hex:
            raise Shredded(f"sealed with key {key_id}, not the document's current key")
        raw = base64.b64decode(body)
        try:
            return (
                AESGCM(self.key)
                .decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad())
                .decode()
            )
        except InvalidTag:
            raise Shredded("the text does not open with the document's key") from None


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def key_for(conn: Connection, document_id: uuid.UUID) -> Key | None:
    """The document's key, made now if it has none; None when the document does not exist."""
    conn.execute(
        insert(DocumentKey)
        .from_select(
            ["document_id", "key_id", "key"],
            select(Document.id, literal(uuid.uuid4()), literal(os.urandom(_KEY_BYTES))).where(
                Document.id == document_id
            ),
        )
        .on_conflict_do_nothing(index_elements=[DocumentKey.document_id])
    )
    return keys_for(conn, [document_id]).get(document_id)


def keys_for(conn: Connection, document_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Key]:
    """The current keys of those documents that have one."""
    wanted = sorted(set(document_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        select(DocumentKey.document_id, DocumentKey.key_id, DocumentKey.key).where(
            DocumentKey.document_id.in_(wanted)
        )
    )
    return {row.document_id: Key(row.document_id, row.key_id, bytes(row.key)) for row in rows}


def seal_chunk(event: ChunkCreated, key: Key) -> ChunkCreated:
    """The event with its text and headings sealed."""
    return dataclasses.replace(
        event,
        text=key.seal(event.text),
        heading_path=tuple(key.seal(h) for h in event.heading_path),
    )


def open_chunk(event: ChunkCreated, keys: dict[uuid.UUID, Key]) -> ChunkCreated:
    """The event with its text and headings readable; raises :class:`Shredded`."""
    if not is_sealed(event.text) and not any(map(is_sealed, event.heading_path)):
        return event
    key = keys.get(uuid.UUID(event.document_id))
    if key is None:
        raise Shredded(f"document {event.document_id} has no key: it was deleted")
    return dataclasses.replace(
        event,
        text=key.open(event.text),
        heading_path=tuple(key.open(h) for h in event.heading_path),
    )
