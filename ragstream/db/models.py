"""Tables. Changed only through Alembic migrations (``ragstream/db/migrations``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

VECTOR_DIMENSIONS = 384

TZ = DateTime(timezone=True)


class Regconfig(UserDefinedType[str]):
    """PostgreSQL's ``regconfig``: a text-search configuration (``english``, ``simple``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "regconfig"


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Lineage:
    """Where a row came from: the Kafka record that produced it."""

    source_topic: Mapped[str | None] = mapped_column(Text)
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant", "sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))  # None: never read (see admit)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default="{}", default=dict
    )
    parser: Mapped[str] = mapped_column(Text, server_default="local")
    status: Mapped[str] = mapped_column(Text, index=True)
    # A client's own name for the document; each new content under it is a new version.
    external_id: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    current_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    page_count: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int | None] = mapped_column(Integer)
    embedding_model: Mapped[str | None] = mapped_column(Text)
    text_search_config: Mapped[str | None] = mapped_column(Regconfig())
    failed_stage: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(TZ)
    parsing_started_at: Mapped[datetime | None] = mapped_column(TZ)
    parsed_at: Mapped[datetime | None] = mapped_column(TZ)
    chunking_started_at: Mapped[datetime | None] = mapped_column(TZ)
    chunked_at: Mapped[datetime | None] = mapped_column(TZ)
    embedding_started_at: Mapped[datetime | None] = mapped_column(TZ)
    completed_at: Mapped[datetime | None] = mapped_column(TZ)
    failed_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class Job(Base):
    """One submission or reprocessing of a document; its progress is counted from the buffers."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(Text)  # upload | reprocess
    from_stage: Mapped[str] = mapped_column(Text, server_default="parse")
    status: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    # W3C trace id of the request that made the job (its traceparent's, or a new trace)
    trace_id: Mapped[str | None] = mapped_column(String(32))


class Blob(Base):
    """Content-addressed bytes: uploads and parsed documents travel by this reference."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # One or the other: the bytes here, or the URI of the object that holds them
    # (an upload with ``blob_store = s3://...``; see ragstream.blobstore.BlobStore).
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class DeletedDocument(Base):
    """A deleted document's id (no content): its late events are skipped, not dead-lettered."""

    __tablename__ = "deleted_documents"

    document_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SyncObject(Base):
    """One object of a synced source and the document made from it (``ragstream sync``)."""

    __tablename__ = "sync_objects"

    tenant: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    stamp: Mapped[str] = mapped_column(Text)  # mtime in ns, or an ETag
    sha256: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    external_id: Mapped[str] = mapped_column(Text)
    synced_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class DocumentKey(Base):
    """A document's own key: its events' text is sealed with it (``ragstream/crypto.py``).

    Deleted with the document, which makes every copy of that text in the
    topics unreadable at once (crypto-shredding).
    """

    __tablename__ = "document_keys"

    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class ParseBuffer(Lineage, Base):
    __tablename__ = "document_parse_buffer"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    text_blob_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(Text)
    parser: Mapped[str] = mapped_column(Text)
    parser_version: Mapped[str] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    block_count: Mapped[int] = mapped_column(Integer)


class DocumentPart(Base):
    """One page range of a large PDF, parsed on its own; the last one in merges them all."""

    __tablename__ = "document_parts"

    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    part_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    part_count: Mapped[int] = mapped_column(Integer)
    page_start: Mapped[int] = mapped_column(Integer)
    page_end: Mapped[int] = mapped_column(Integer)
    parsed_blob_sha256: Mapped[str | None] = mapped_column(String(64))
    block_count: Mapped[int | None] = mapped_column(Integer)
    parsed_at: Mapped[datetime | None] = mapped_column(TZ)


class ChunkBuffer(Lineage, Base):
    __tablename__ = "document_chunk_buffer"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    chunk_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    pages: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    heading_path: Mapped[list[str]] = mapped_column(ARRAY(Text))
    chunker_version: Mapped[str] = mapped_column(Text)
    chunker_config_hash: Mapped[str] = mapped_column(Text, index=True)
    parser: Mapped[str] = mapped_column(Text)
    parser_version: Mapped[str] = mapped_column(Text)
    # Keyword search (ragstream/textsearch.py): generated by PostgreSQL, GIN-indexed.
    text_search_config: Mapped[str] = mapped_column(Regconfig(), server_default="simple")
    text_search: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector(text_search_config, text)", persisted=True)
    )


class VectorBuffer(Lineage, Base):
    """A chunk's vector of one model, at that model's dimension (indexes: ``db/vectors.py``)."""

    __tablename__ = "document_vector_buffer"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    chunk_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("document_chunk_buffer.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    model: Mapped[str] = mapped_column(Text, index=True)
    model_version: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64), index=True)
    chunker_version: Mapped[str] = mapped_column(Text)
    chunker_config_hash: Mapped[str] = mapped_column(Text)
    parser: Mapped[str] = mapped_column(Text)
    parser_version: Mapped[str] = mapped_column(Text)
    dimensions: Mapped[int] = mapped_column(Integer)
    served_model_id: Mapped[str | None] = mapped_column(Text)  # remote models: what served it
    embedding: Mapped[list[float]] = mapped_column(Vector())


class LlamaParseJob(Lineage, Base):
    """A parse handed to LlamaParse; its webhook and the poller both complete it, once."""

    __tablename__ = "llamaparse_jobs"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # LlamaParse's job id
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    submitted_at: Mapped[datetime] = mapped_column(TZ)
    callback_due_at: Mapped[datetime] = mapped_column(TZ)
    last_polled_at: Mapped[datetime | None] = mapped_column(TZ)
    received_at: Mapped[datetime | None] = mapped_column(TZ)
    received_via: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(TZ)
    result_blob_sha256: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """Webhook ids already accepted: the primary key makes a replay a no-op."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class EmbeddingCache(Base):
    """A vector per (model, model version, text), so that identical texts are embedded once.

    ``key`` is the sha256 of the three, like the blob store's content address;
    the vector column has no fixed size because any model may be cached.
    """

    __tablename__ = "embedding_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64), index=True)
    dimensions: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[list[float]] = mapped_column(Vector())
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class EmbeddingModel(Base):
    """A model vectors are built for; the ``active`` one is what search embeds queries with.

    ``spec`` is what ``ragstream reembed --model`` was given, so the query side
    can build the same embedder; ``model`` is the embedder's name in vector rows.
    """

    __tablename__ = "embedding_models"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)  # building | active | retired
    version: Mapped[str | None] = mapped_column(Text)
    dimensions: Mapped[int | None] = mapped_column(Integer)
    served_model_id: Mapped[str | None] = mapped_column(Text)
    activated_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


Index(
    "uq_embedding_models_one_active",
    EmbeddingModel.state,
    unique=True,
    postgresql_where=EmbeddingModel.state == "active",
)
