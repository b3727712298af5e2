"""Deleting documents with every row that holds their text.

A document's text lives in its upload blob, its parse results (whole, and per
part of a large PDF), its chunks, LlamaParse results, and, addressed by the
hash of each chunk's text, in ``embedding_cache``. Its key (``document_keys``)
goes with the row, which shreds the copies of its text in the topics
(``ragstream/crypto.py``). All in the caller's transaction: at its commit the
text is gone from PostgreSQL.

Blobs and cache rows are shared by content; those another document still
refers to stay. Blob rows are locked before the references go (see
:func:`ragstream.db.blobs.lock_for_delete`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ragstream.db import blobs
from ragstream.db.models import (
    ChunkBuffer,
    DeletedDocument,
    Document,
    DocumentPart,
    EmbeddingCache,
    LlamaParseJob,
    ParseBuffer,
    VectorBuffer,
)


def purge_documents(conn: Connection, document_ids: Iterable[uuid.UUID]) -> None:
    """Delete the documents (their rows cascade) and the blobs and cache rows only they used."""
    ids = sorted(set(document_ids))
    if not ids:
        return
    candidates: set[str] = set()
    for column, owner in (
        (Document.sha256, Document.id),
        (ParseBuffer.text_blob_sha256, ParseBuffer.document_id),
        (DocumentPart.parsed_blob_sha256, DocumentPart.document_id),
        (LlamaParseJob.result_blob_sha256, LlamaParseJob.document_id),
    ):
        rows = conn.execute(select(column).where(owner.in_(ids))).scalars()
        candidates |= {sha for sha in rows if sha}
    locked = blobs.lock_for_delete(conn, candidates)
    chunk_hash = func.encode(func.sha256(func.convert_to(ChunkBuffer.text, "UTF8")), "hex")
    texts = set(
        conn.execute(
            select(VectorBuffer.text_sha256).where(VectorBuffer.document_id.in_(ids))
        ).scalars()
    ) | set(conn.execute(select(chunk_hash).where(ChunkBuffer.document_id.in_(ids))).scalars())
    conn.execute(delete(Document).where(Document.id.in_(ids)))
    conn.execute(
        pg_insert(DeletedDocument)
        .values([{"document_id": i} for i in ids])
        .on_conflict_do_nothing(index_elements=["document_id"])
    )
    blobs.delete_unreferenced(conn, locked)
    if texts:
        still_used = set(
            conn.execute(
                select(VectorBuffer.text_sha256).where(VectorBuffer.text_sha256.in_(texts))
            ).scalars()
        )
        unused = sorted(texts - still_used)
        if unused:
            conn.execute(delete(EmbeddingCache).where(EmbeddingCache.text_sha256.in_(unused)))


def was_deleted(conn: Connection, document_id: uuid.UUID) -> bool:
    """Whether this document existed and was deleted (rather than never existing)."""
    found = conn.execute(
        select(DeletedDocument.document_id).where(DeletedDocument.document_id == document_id)
    ).first()
    return found is not None
