"""Each event built next to its schema, with the topic and key it travels under.

A constructor returns one :class:`Outgoing`: the (prefixed) topic, the key, the
event, and for a document's parts and chunks the ``spread`` that shares them out
among the partitions. Event ids are deterministic (:func:`ragstream.ids.event_id`),
so building the same event again (a reprocess retried, a result re-published)
gives the same event.

The first argument names the topics: anything with ``topic(name) -> str``
(:class:`~ragstream.settings.Settings`, :class:`~ragstream.context.StageContext`),
so an ``Outgoing`` always carries the deployment's topic prefix.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from ragstream import ids, topology
from ragstream.crypto import Key, seal_chunk
from ragstream.db.blobs import uri_for
from ragstream.schemas.events import (
    ChunkCreated,
    ChunkEmbedded,
    DocumentParsed,
    DocumentUploaded,
    Event,
    PipelineAlert,
)


class TopicNames(Protocol):
    def topic(self, name: str) -> str: ...


@dataclass(frozen=True)
class Outgoing:
    """An event to publish, with its topic and key (once the writes it follows have committed)."""

    topic: str
    key: str
    event: Event
    # Related messages that must not queue behind one another (a document's
    # parts) carry consecutive spreads: partition = spread mod partitions.
    spread: int | None = None


def document_spread(document_id: uuid.UUID, index: int) -> int:
    """The ``spread`` of a document's ``index``-th part or chunk.

    Consecutive partitions from one the document picks: a document's pieces
    are shared out evenly among the consumers of a topic, where hashing their
    keys would leave one consumer with more than its share (and the others
    waiting for it at the end). The same piece always lands on the same
    partition, as long as the topic keeps its partition count.
    """
    return zlib.crc32(document_id.bytes) + index


def document_uploaded(
    names: TopicNames,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    tenant: str,
    sha: str,
    size: int,
    filename: str | None,
    metadata: Mapping[str, str] | None,
    parser: str,
    uploaded_at: datetime,
) -> Outgoing:
    """A stored upload of one job, keyed by its document: what parse reads."""
    event = DocumentUploaded(
        event_id=str(ids.event_id("DocumentUploaded", document_id, job_id)),
        document_id=str(document_id),
        job_id=str(job_id),
        tenant=tenant,
        blob_sha256=sha,
        blob_uri=uri_for(sha),
        size_bytes=size,
        filename=filename,
        parser=parser,
        metadata=dict(metadata or {}),
        uploaded_at=uploaded_at,
    )
    return Outgoing(names.topic(topology.UPLOADED), str(document_id), event)


def external_upload(
    names: TopicNames,
    *,
    event_id: str,
    tenant: str,
    uri: str,
    size: int | None,
    external_id: str | None,
    uploaded_at: datetime,
    sha: str | None = None,
    filename: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Outgoing:
    """An upload event of the public contract (ids null): what another service publishes,
    and what a bucket notification becomes; keyed by its external id or its URI."""
    event = DocumentUploaded(
        event_id=event_id,
        document_id=None,
        job_id=None,
        tenant=tenant,
        blob_sha256=sha,
        blob_uri=uri,
        size_bytes=size,
        filename=filename or uri.rstrip("/").rsplit("/", 1)[-1],
        metadata=dict(metadata or {}),
        external_id=external_id,
        uploaded_at=uploaded_at,
    )
    return Outgoing(names.topic(topology.UPLOADED), external_id or uri, event)


def document_part(
    names: TopicNames,
    whole: DocumentUploaded,
    index: int,
    pages: Sequence[tuple[int, int]],
    *,
    emitted_at: datetime,
) -> Outgoing:
    """Part ``index`` of a long document's upload (pages ``pages[index]``, 1-based and
    inclusive), keyed ``document:index`` and spread so the parts go to consecutive
    partitions: each parse worker gets its share of one document."""
    document_id, job_id = uuid.UUID(whole.document_id), uuid.UUID(whole.job_id)
    start, end = pages[index]
    part = replace(
        whole,
        event_id=str(ids.event_id("DocumentPart", document_id, job_id, index)),
        part_index=index,
        part_count=len(pages),
        page_start=start,
        page_end=end,
        emitted_at=emitted_at,
    )
    return Outgoing(
        names.topic(topology.UPLOADED),
        f"{document_id}:{index}",
        part,
        spread=document_spread(document_id, index),
    )


def document_parsed(
    names: TopicNames,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    tenant: str,
    *,
    text_blob_sha256: str,
    content_type: str,
    parser: str,
    parser_version: str,
    block_count: int,
    page_count: int | None,
    parsed_at: datetime,
) -> Outgoing:
    """The DocumentParsed of one job, keyed by its document: what chunk reads."""
    event = DocumentParsed(
        event_id=str(ids.event_id("DocumentParsed", document_id, job_id)),
        document_id=str(document_id),
        job_id=str(job_id),
        tenant=tenant,
        text_blob_sha256=text_blob_sha256,
        text_blob_uri=uri_for(text_blob_sha256),
        content_type=content_type,
        parser=parser,
        parser_version=parser_version,
        block_count=block_count,
        page_count=page_count,
        parsed_at=parsed_at,
    )
    return Outgoing(names.topic(topology.PARSED), str(document_id), event)


def chunk_created(
    names: TopicNames,
    *,
    key: Key,
    chunk_id: uuid.UUID,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    tenant: str,
    chunk_index: int,
    chunk_count: int,
    text: str,
    token_count: int,
    pages: Sequence[int],
    heading_path: Sequence[str],
    chunker_version: str,
    chunker_config_hash: str,
    parser: str,
    parser_version: str,
    created_at: datetime,
) -> Outgoing:
    """One chunk of one job, keyed by the chunk and spread over the partitions: what embed reads.

    Its text and headings are sealed with the document's ``key`` (:mod:`ragstream.crypto`).
    """
    event = ChunkCreated(
        event_id=str(ids.event_id("ChunkCreated", chunk_id, job_id)),
        chunk_id=str(chunk_id),
        document_id=str(document_id),
        job_id=str(job_id),
        tenant=tenant,
        chunk_index=chunk_index,
        chunk_count=chunk_count,
        text=text,
        token_count=token_count,
        pages=tuple(pages),
        heading_path=tuple(heading_path),
        chunker_version=chunker_version,
        chunker_config_hash=chunker_config_hash,
        parser=parser,
        parser_version=parser_version,
        created_at=created_at,
    )
    return Outgoing(
        names.topic(topology.CHUNKED),
        str(chunk_id),
        seal_chunk(event, key),
        document_spread(document_id, chunk_index),
    )


def chunk_embedded(
    names: TopicNames,
    chunk: ChunkCreated,
    *,
    embedding_id: uuid.UUID,
    model: str,
    model_version: str,
    vector: Sequence[float],
    embedded_at: datetime,
) -> Outgoing:
    """The vector of one chunk by one model, keyed by its document: what finalize reads."""
    event = ChunkEmbedded(
        event_id=str(ids.event_id("ChunkEmbedded", embedding_id, chunk.job_id)),
        embedding_id=str(embedding_id),
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        job_id=chunk.job_id,
        tenant=chunk.tenant,
        chunk_index=chunk.chunk_index,
        chunk_count=chunk.chunk_count,
        model=model,
        model_version=model_version,
        dimensions=len(vector),
        vector=tuple(vector),
        embedded_at=embedded_at,
    )
    return Outgoing(names.topic(topology.EMBEDDED), chunk.document_id, event)


@dataclass(frozen=True)
class Tombstone:
    """A null value for a key a deleted document had, on the partition its events took."""

    topic: str
    key: str
    spread: int | None = None


def document_tombstones(
    names: TopicNames,
    document_id: uuid.UUID,
    *,
    chunks: Iterable[tuple[uuid.UUID, int]],
    parts: Iterable[int],
) -> list[Tombstone]:
    """One tombstone for every key a document's events had: its own, its parts', its chunks'.

    ``chunks`` are ``(chunk id, chunk index)``; ``parts`` the part indexes (part 0
    travels under the document's own key).
    """
    out = [
        Tombstone(names.topic(topic), str(document_id))
        for topic in (topology.UPLOADED, topology.PARSED, topology.EMBEDDED)
    ]
    out += [
        Tombstone(
            names.topic(topology.UPLOADED),
            f"{document_id}:{index}",
            document_spread(document_id, index),
        )
        for index in parts
        if index
    ]
    out += [
        Tombstone(names.topic(topology.CHUNKED), str(chunk_id), document_spread(document_id, index))
        for chunk_id, index in chunks
    ]
    return out


def pipeline_alert(
    names: TopicNames,
    *,
    alert_id: str,
    kind: str,
    message: str,
    first_seen_at: datetime,
    stage: str | None,
    document_id: str | None,
    state: str,
    details: Mapping[str, str],
) -> Outgoing:
    """An alert of the monitor, opened or resolved, keyed by its id: ``pipeline.alerts``."""
    event = PipelineAlert(
        alert_id=alert_id,
        kind=kind,
        stage=stage,
        document_id=document_id,
        message=message,
        state=state,
        details=dict(details),
        first_seen_at=first_seen_at,
    )
    return Outgoing(names.topic(topology.ALERTS), alert_id, event)
