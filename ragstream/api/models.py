"""What the API reads and answers: ``XCreate`` for request bodies, ``XPublic`` for answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ragstream.search import MAX_K
from ragstream.textsearch import Mode

T = TypeVar("T")
ReprocessStage = Literal["parse", "chunk", "embed"]


class ErrorPublic(BaseModel):
    detail: str


class DlqLocation(BaseModel):
    topic: str
    partition: int
    offset: int


class ErrorInfo(BaseModel):
    """Why a document failed: where, what kind of error, and its message."""

    model_config = ConfigDict(populate_by_name=True)

    stage: str | None
    error_class: str | None = Field(serialization_alias="class")
    message: str | None
    dlq: DlqLocation | None = Field(None, description="Where the failed message was dead-lettered.")


class WaitPublic(BaseModel):
    """Why a document that is not finished is where it is, as the monitor last saw it."""

    state: Literal["queued", "stalled", "unknown"]
    stage: str
    position: int | None = Field(description="Records ahead of it in its stage's partition.")
    estimate_s: float | None = Field(description="Queued: seconds to its start at current rate.")
    estimated_start: datetime | None
    since: datetime | None = Field(description="Stalled: since the stage's last progress.")
    reason: str
    seen: dict[str, float | int | str] = Field(description="The monitor's last look at the stage.")


class DocumentAccepted(BaseModel):
    document_id: uuid.UUID
    job_id: uuid.UUID
    created: bool = Field(description="False when the same content was submitted before.")
    status: str
    content_type: str
    filename: str | None
    external_id: str | None
    version: int
    status_url: str = Field(description="Where the job's progress is (GET).")
    document_url: str


class UploadPublic(BaseModel):
    documents: list[DocumentAccepted]


class VersionPublic(BaseModel):
    document_id: uuid.UUID
    version: int
    status: str
    current: bool = Field(description="True for the version search returns.")


class StageTiming(BaseModel):
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None


class JobPublic(BaseModel):
    job_id: uuid.UUID
    document_id: uuid.UUID
    kind: str
    from_stage: str
    status: str
    current_stage: str | None = Field(description="The stage working or next to work; None at end.")
    chunks_total: int | None = Field(description="Known once the document is chunked.")
    chunks_embedded: int
    parts_total: int | None = Field(
        None, description="A large PDF parsed in parts: how many (None for a whole document)."
    )
    parts_parsed: int | None = Field(None, description="Of those parts, how many are parsed.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    stages: dict[str, StageTiming]
    timestamps: dict[str, datetime | None]
    error: ErrorInfo | None
    wait: WaitPublic | None = Field(None, description="Queued or stalled; None once finished.")
    versions: list[VersionPublic] = Field(
        description="With an external_id: every version of the document, current or in flight."
    )
    trace_id: str | None = Field(
        None,
        description="W3C trace id (32 hex digits) of the trace the job's request started or "
        "continued (its traceparent); the stages' spans join it. None for jobs made before "
        "traces were recorded.",
    )


class DocumentPublic(BaseModel):
    document_id: uuid.UUID
    filename: str | None
    content_type: str | None
    size_bytes: int
    sha256: str | None = Field(
        description="Hex SHA-256 of the content; null for a document whose object, named by "
        "an upload event from another service, could not be read (see its error)."
    )
    metadata: dict[str, str]
    parser: str
    status: str
    external_id: str | None
    version: int
    current_job_id: uuid.UUID | None
    page_count: int | None
    chunk_count: int | None
    embedding_model: str | None
    error: ErrorInfo | None
    wait: WaitPublic | None = None
    uploaded_at: datetime
    completed_at: datetime | None
    failed_at: datetime | None
    updated_at: datetime
    status_url: str | None


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class ChunkVectorPublic(BaseModel):
    """One model's vector of a chunk: the model's identity and the lineage of what it embedded."""

    model: str
    model_version: str
    dimensions: int
    served_model_id: str | None = Field(None, description="Remote models: the endpoint's id.")
    parser: str
    parser_version: str
    chunker_version: str
    chunker_config_hash: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None


class ChunkPublic(BaseModel):
    chunk_id: uuid.UUID
    chunk_index: int
    text: str
    token_count: int
    pages: list[int]
    heading_path: list[str]
    vectors: list[ChunkVectorPublic] = []


class MetadataPrefix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(min_length=1, max_length=1000)


class SearchCreate(BaseModel):
    """A search; every filter narrows it, inside the index walks (so ``k`` hits come back)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=MAX_K)
    mode: Mode = Field(
        "hybrid",
        description="vector (cosine), keyword (full-text) or hybrid (both, fused by "
        'reciprocal rank). Chunks holding a "quoted phrase", or an unquoted query of 5 '
        "words or more as written, come first in keyword and hybrid.",
    )
    vector_weight: float = Field(1.0, ge=0, le=100, description="Hybrid: the vector ranking's.")
    keyword_weight: float = Field(1.0, ge=0, le=100, description="Hybrid: the keyword one's.")
    cursor: str | None = Field(
        None, max_length=500, description="The previous page's next_cursor, for the next page."
    )
    document_ids: list[uuid.UUID] | None = Field(None, max_length=1000)
    external_ids: list[str] | None = Field(None, max_length=1000)
    sources: list[str] | None = Field(
        None, max_length=100, description="Prefixes of the synced source (`ragstream sync`)."
    )
    content_types: list[str] | None = Field(None, max_length=100)
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None
    metadata: dict[str, str | list[str] | MetadataPrefix] | None = Field(
        None,
        description='Per key: a value (equal), a list (any of) or {"prefix": "..."}; '
        "all keys must match.",
    )
    model: str | None = Field(
        None,
        max_length=200,
        description="Embedding model to search (hash, minilm, openai:<name>): the configured "
        "one, the active one, one built by `ragstream reembed`, or one with vectors here; "
        "others are refused with 400. Default: the active one (`ragstream reembed --swap`).",
    )


class SearchHitPublic(BaseModel):
    score: float = Field(
        description="vector: cosine similarity; keyword: ts_rank_cd; hybrid: the fused "
        "reciprocal-rank score. Chunks holding the exact phrase come first in the last two."
    )
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    chunk_index: int
    text: str
    pages: list[int]
    heading_path: list[str]
    filename: str | None
    external_id: str | None
    vector_rank: int | None = Field(None, description="Its rank by vector, if it had one.")
    keyword_rank: int | None = Field(None, description="Its rank by keyword, if it had one.")


class SearchPublic(BaseModel):
    model: str | None = Field(description="The model of the query's vector (none: keyword).")
    mode: Mode
    hits: list[SearchHitPublic]
    next_cursor: str | None = Field(None, description="Pass it back for the next page.")


class ReprocessPublic(BaseModel):
    document_id: uuid.UUID
    job_id: uuid.UUID
    from_stage: ReprocessStage
    status: str
    status_url: str


class DeletedPublic(BaseModel):
    document_id: uuid.UUID
    chunks_deleted: int
    vectors_deleted: int


class WebhookAck(BaseModel):
    outcome: str


class NotificationAck(BaseModel):
    uploads: int = Field(description="Upload events published, one per object created.")
    removed: int = Field(description="Objects removed.")
    deleted_documents: int = Field(description="Documents (versions) deleted for them.")
    ignored: int = Field(description="Records of other kinds (test events, restores, ...).")


class HealthPublic(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
