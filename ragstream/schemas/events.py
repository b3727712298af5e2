"""The pipeline's events as Python values, and where their Avro schemas live.

The ``.avsc`` files next to this module are the contract; the dataclasses here
mirror them field for field so stage code never handles raw dicts. Times are
timezone-aware UTC with millisecond precision, because that is what
``timestamp-millis`` can carry: an event compares equal to itself after a round
trip through the codec.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, ClassVar, Literal, Self, cast

import fastavro

NAMESPACE = "ragstream.events"

ParserChoice = Literal["local", "llamaparse"]
PARSER_CHOICES: frozenset[str] = frozenset({"local", "llamaparse"})

_HISTORY_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def new_event_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Now, cut to milliseconds so it survives ``timestamp-millis`` unchanged."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def _as_utc_millis(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    tz = value.tzinfo
    if tz is None or tz.utcoffset(value) is None:
        raise ValueError(f"{name} is a naive datetime; events carry timezone-aware UTC times")
    if tz is not UTC:
        value = value.astimezone(UTC)
    micros = value.microsecond % 1000
    if micros:
        value = value.replace(microsecond=value.microsecond - micros)
    return value


def _as_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    tolist = getattr(value, "tolist", None)  # numpy arrays: plain floats, much faster
    if tolist is not None:
        return tuple(tolist())
    return tuple(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries; concrete events are the subclasses below."""

    SCHEMA_NAME: ClassVar[str] = ""
    _DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("emitted_at",)
    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ()

    event_id: str = field(default_factory=new_event_id)
    schema_version: int = 1
    emitted_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        for name in self._DATETIME_FIELDS:
            value = getattr(self, name)
            fixed = _as_utc_millis(name, value)
            if fixed is not value:
                object.__setattr__(self, name, fixed)
        for name in self._TUPLE_FIELDS:
            value = getattr(self, name)
            if type(value) is not tuple:
                object.__setattr__(self, name, _as_tuple(value))
        self._check()

    def _check(self) -> None:
        """Per-event invariants that the Avro types cannot express."""

    @classmethod
    def full_name(cls) -> str:
        return f"{NAMESPACE}.{cls.SCHEMA_NAME}"

    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _field_names(type(self))}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        names = _field_names(cls)
        try:
            kwargs = {name: record[name] for name in names}
        except KeyError as exc:
            raise ValueError(f"{cls.SCHEMA_NAME} record lacks field {exc.args[0]!r}") from None
        if len(record) != len(names):
            extra = sorted(set(record) - set(names))
            raise ValueError(f"{cls.SCHEMA_NAME} record has unknown fields {extra}")
        return cls(**kwargs)


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentUploaded(Event):
    """A stored upload waiting to be parsed."""

    SCHEMA_NAME: ClassVar[str] = "DocumentUploaded"
    _DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("uploaded_at", "emitted_at")

    # v2: part fields for large PDFs parsed in parts; v3: events from other services
    # (ids, hash and size left null, external_id)
    schema_version: int = 3
    document_id: str | None
    job_id: str | None
    tenant: str
    blob_sha256: str | None
    blob_uri: str
    size_bytes: int | None
    uploaded_at: datetime
    filename: str | None = None
    parser: str = "local"
    metadata: dict[str, str] = field(default_factory=dict)
    external_id: str | None = None
    part_index: int | None = None
    part_count: int | None = None
    page_start: int | None = None
    page_end: int | None = None

    def _check(self) -> None:
        if self.parser not in PARSER_CHOICES:
            raise ValueError(f"parser must be one of {sorted(PARSER_CHOICES)}, not {self.parser!r}")
        if type(self.metadata) is not dict:
            object.__setattr__(self, "metadata", dict(self.metadata))
        if (self.document_id is None) != (self.job_id is None):
            raise ValueError("document_id and job_id are both set (ragstream's own) or both null")
        if self.document_id is None and self.part_index is not None:
            raise ValueError("an event from another service names a whole document, not a part")

    @property
    def external(self) -> bool:
        """Published by another service: the object is read and recorded before parsing."""
        return self.document_id is None


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentParsed(Event):
    """A parsed document, its blocks stored as a blob."""

    SCHEMA_NAME: ClassVar[str] = "DocumentParsed"
    _DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("parsed_at", "emitted_at")

    document_id: str
    job_id: str
    tenant: str
    text_blob_sha256: str
    text_blob_uri: str
    content_type: str
    parser: str
    parser_version: str
    block_count: int
    parsed_at: datetime
    page_count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkCreated(Event):
    """One chunk, text inline, ready to embed."""

    SCHEMA_NAME: ClassVar[str] = "ChunkCreated"
    _DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("created_at", "emitted_at")
    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ("pages", "heading_path")

    chunk_id: str
    document_id: str
    job_id: str
    tenant: str
    chunk_index: int
    chunk_count: int
    text: str
    token_count: int
    pages: tuple[int, ...]
    heading_path: tuple[str, ...]
    chunker_version: str
    chunker_config_hash: str
    parser: str
    parser_version: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkEmbedded(Event):
    """The vector of one chunk."""

    SCHEMA_NAME: ClassVar[str] = "ChunkEmbedded"
    _DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("embedded_at", "emitted_at")
    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ("vector",)

    embedding_id: str
    chunk_id: str
    document_id: str
    job_id: str
    tenant: str
    chunk_index: int
    chunk_count: int
    model: str
    model_version: str
    dimensions: int
    vector: tuple[float, ...]
    embedded_at: datetime

    def _check(self) -> None:
        if len(self.vector) != self.dimensions:
            raise ValueError(
                f"vector has {len(self.vector)} values but dimensions is {self.dimensions}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineAlert(Event):
    """An alert of the monitor, opened or resolved; not a pipeline stage's event."""

    SCHEMA_NAME: ClassVar[str] = "PipelineAlert"
    _DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("first_seen_at", "emitted_at")

    alert_id: str
    kind: str
    message: str
    first_seen_at: datetime
    stage: str | None = None
    document_id: str | None = None
    state: str = "open"
    details: dict[str, str] = field(default_factory=dict)

    def _check(self) -> None:
        if self.state not in ("open", "resolved"):
            raise ValueError(f"state must be open or resolved, not {self.state!r}")
        if type(self.details) is not dict:
            object.__setattr__(self, "details", dict(self.details))


EVENT_TYPES: tuple[type[Event], ...] = (
    DocumentUploaded,
    DocumentParsed,
    ChunkCreated,
    ChunkEmbedded,
)
"""Every event, in pipeline order."""

SCHEMA_NAMES: tuple[str, ...] = tuple(cls.SCHEMA_NAME for cls in EVENT_TYPES)
"""Short names; each is the stem of an ``.avsc`` file and of a ``history/`` folder."""

MONITOR_EVENT_TYPES: tuple[type[Event], ...] = (PipelineAlert,)
"""Events of the monitor; their schemas live beside the pipeline's but are not in its catalog."""

EVENT_BY_SCHEMA: Mapping[str, type[Event]] = {
    cls.full_name(): cls for cls in (*EVENT_TYPES, *MONITOR_EVENT_TYPES)
}
"""Full Avro name (``ragstream.events.X``) to event class."""

SCHEMA_BY_EVENT: Mapping[type[Event], str] = {cls: cls.full_name() for cls in EVENT_TYPES}
"""Event class to full Avro name; also the Schema Registry subject."""


def _resources() -> Traversable:
    return resources.files(__package__ or "ragstream.schemas")


@cache
def _schema_text(name: str) -> str:
    return _resources().joinpath(f"{name}.avsc").read_text(encoding="utf-8")


def schema_json(name: str) -> dict[str, Any]:
    """The current schema ``<name>.avsc`` as JSON; a fresh copy the caller may change."""
    loaded: dict[str, Any] = json.loads(_schema_text(name))
    return loaded


@cache
def parsed_schema(name: str) -> dict[str, Any]:
    """The current schema, parsed by fastavro once; shared, so never mutate it."""
    return cast(dict[str, Any], fastavro.parse_schema(schema_json(name)))


@cache
def _history_texts(name: str) -> tuple[tuple[int, str], ...]:
    folder = _resources().joinpath("history", name)
    if not folder.is_dir():
        return ()
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = _HISTORY_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))


def history(name: str) -> dict[int, dict[str, Any]]:
    """Every published version of schema ``name`` (``history/<name>/v<N>.avsc``) by N."""
    return {version: json.loads(text) for version, text in _history_texts(name)}
