"""Events to bytes and back: the only place that knows the wire format.

Two framings, picked by :func:`make_codec` from ``settings.schema_registry_url``:

* no registry: Avro single-object encoding (``C3 01``, the 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, the
  Avro binary body). A message names its writer schema by fingerprint, so every
  version that ever wrote data is kept in ``history/`` and looked up here;
* a Confluent Schema Registry: magic byte ``0``, the 4-byte big-endian schema id,
  the Avro binary body. Subjects follow RecordNameStrategy
  (``ragstream.events.DocumentUploaded``) because one codec serves every topic.

Either way the body is read with the writer's schema resolved against the
current one, so data written by an older version decodes into today's event.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form

from ragstream.errors import DependencyUnavailable, PermanentError, UndecodableEvent
from ragstream.schemas.events import (
    EVENT_BY_SCHEMA,
    SCHEMA_NAMES,
    Event,
    history,
    schema_json,
)

if TYPE_CHECKING:  # the registry client costs ~0.3 s to import; only registry users pay it
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from ragstream.settings import Settings

E = TypeVar("E", bound=Event)
Buffer = bytes | bytearray | memoryview

MARKER = b"\xc3\x01"
"""Avro single-object encoding marker (format version 1)."""

CONFLUENT_MAGIC = 0
"""First byte of the Confluent Schema Registry wire format."""

_SINGLE_OBJECT_HEADER = len(MARKER) + 8
_CONFLUENT_HEADER = 5
_REGISTRY_TIMEOUT_S = 10.0

# --- CRC-64-AVRO ------------------------------------------------------------------

_CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The Avro spec's 64-bit Rabin fingerprint, as an unsigned int."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


AvroSchema = Mapping[str, Any] | list[Any] | str
"""A schema as JSON data: a named primitive, a union list or an object."""


def canonical_form(schema: AvroSchema) -> str:
    """Parsing Canonical Form: what a fingerprint is taken of (no docs, defaults...)."""
    if isinstance(schema, Mapping):
        schema = dict(schema)
    return to_parsing_canonical_form(schema)


def fingerprint(schema: AvroSchema) -> int:
    """CRC-64-AVRO of the schema's Parsing Canonical Form."""
    return crc64_avro(canonical_form(schema).encode("utf-8"))


# --- float arrays, packed ------------------------------------------------------------
#
# fastavro handles each item of an array separately, which makes a 384-float vector
# cost ~100 us each way; struct does it in a few. An Avro record's encoding is the
# concatenation of its fields' encodings, so a record can be written and read as
# consecutive parts: runs of ordinary fields through fastavro, and each
# ``array<float|double>`` field as one packed block. The bytes are the same as
# fastavro's (pinned by a test); data that needs schema resolution takes the plain
# fastavro path.

_PACKED_CODES = {"float": "f", "double": "d"}
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


@dataclass(frozen=True, slots=True)
class _Packed:
    field: str
    code: str  # struct format character
    size: int


_Segment = dict[str, Any] | _Packed


def _movable(t: Any) -> bool:
    """True if a type neither defines nor names a named type, so it may move to a part."""
    if isinstance(t, str):
        return t in _PRIMITIVES
    if isinstance(t, list):
        return all(_movable(branch) for branch in t)
    if isinstance(t, dict):
        kind = t.get("type")
        if kind == "array":
            return _movable(t.get("items"))
        if kind == "map":
            return _movable(t.get("values"))
        return kind in _PRIMITIVES
    return False


def _split(schema: Mapping[str, Any]) -> tuple[_Segment, ...] | None:
    fields = schema.get("fields")
    if schema.get("type") != "record" or not isinstance(fields, list):
        return None
    segments: list[_Segment] = []
    run: list[Any] = []

    def close_run() -> None:
        if run:
            part = {"type": "record", "name": f"Part{len(segments)}", "fields": list(run)}
            segments.append(cast(dict[str, Any], parse_schema(part)))
            run.clear()

    for f in fields:
        t = f.get("type")
        if isinstance(t, dict) and t.get("type") == "array" and t.get("items") in _PACKED_CODES:
            close_run()
            code = _PACKED_CODES[t["items"]]
            segments.append(_Packed(f["name"], code, struct.calcsize(code)))
        elif _movable(t):
            run.append(f)
        else:
            return None
    close_run()
    return tuple(segments) if any(isinstance(seg, _Packed) for seg in segments) else None


def _write_long(buf: BytesIO, n: int) -> None:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    buf.write(out)


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    z = shift = 0
    while True:
        if pos >= len(data):
            raise EOFError("long runs past the end of the message")
        byte = data[pos]
        pos += 1
        z |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _write_segments(
    buf: BytesIO, segments: tuple[_Segment, ...], record: Mapping[str, Any]
) -> None:
    for seg in segments:
        if isinstance(seg, _Packed):
            values = record[seg.field]
            n = len(values)
            if n:
                _write_long(buf, n)
                buf.write(struct.pack(f"<{n}{seg.code}", *values))
            buf.write(b"\x00")
        else:
            schemaless_writer(buf, seg, record)


def _read_packed(data: bytes, pos: int, seg: _Packed) -> tuple[tuple[float, ...], int]:
    values: tuple[float, ...] = ()
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            return values, pos
        if count < 0:  # a block with its byte size, which we do not need
            count = -count
            _, pos = _read_long(data, pos)
        end = pos + count * seg.size
        if end > len(data):
            raise EOFError(f"array {seg.field} of {count} items runs past the end")
        block = struct.unpack_from(f"<{count}{seg.code}", data, pos)
        values = values + block if values else block
        pos = end


def _read_segments(segments: tuple[_Segment, ...], data: bytes, fo: BytesIO) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for seg in segments:
        if isinstance(seg, _Packed):
            record[seg.field], pos = _read_packed(data, fo.tell(), seg)
            fo.seek(pos)
        else:
            record.update(cast(dict[str, Any], schemaless_reader(fo, seg, None)))
    return record


# --- the schemas a codec knows ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One schema as written, parsed once, with its fingerprint."""

    name: str
    """Full Avro name, e.g. ``ragstream.events.ChunkCreated``."""
    version: int | None
    """Its ``history/<Name>/v<N>.avsc`` number; None for a current schema not yet there."""
    schema: Mapping[str, Any]
    parsed: dict[str, Any]
    fingerprint: int
    segments: tuple[_Segment, ...] | None = None
    """The record split at its float arrays (see :func:`_split`); None if it has none."""

    @classmethod
    def of(cls, schema: Mapping[str, Any], version: int | None = None) -> SchemaVersion:
        raw = dict(schema)
        parsed = cast(dict[str, Any], parse_schema(json.loads(json.dumps(raw))))
        name = parsed.get("name")
        if parsed.get("type") != "record" or not isinstance(name, str):
            raise ValueError("an event schema must be a named Avro record")
        return cls(name, version, raw, parsed, fingerprint(raw), _split(raw))

    def renumbered(self, version: int | None) -> SchemaVersion:
        return SchemaVersion(
            self.name, version, self.schema, self.parsed, self.fingerprint, self.segments
        )

    @property
    def single_object_header(self) -> bytes:
        return MARKER + self.fingerprint.to_bytes(8, "little")

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version is not None else self.name


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How to read a body; made once per writer schema, so resolution is set up once."""

    label: str
    name: str
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: the writer is the current schema
    event_type: type[Event] | None
    segments: tuple[_Segment, ...] | None  # only when no resolution is needed


class SchemaCatalog:
    """The current schema of each event plus every earlier version that wrote data."""

    def __init__(
        self,
        current: Iterable[Mapping[str, Any]],
        history: Iterable[tuple[int, Mapping[str, Any]]] = (),
    ) -> None:
        self._current: dict[str, SchemaVersion] = {}
        self._versions: dict[str, dict[int, SchemaVersion]] = {}
        for schema in current:
            sv = SchemaVersion.of(schema)
            if sv.name in self._current:
                raise ValueError(f"two current schemas named {sv.name}")
            self._current[sv.name] = sv
            self._versions[sv.name] = {}
        for number, schema in history:
            sv = SchemaVersion.of(schema, number)
            if sv.name not in self._current:
                raise ValueError(f"history has {sv.label} but there is no current {sv.name}")
            self._versions[sv.name][number] = sv

        # Keyed by the 8 fingerprint bytes as they appear in a message header.
        self._known: dict[bytes, tuple[SchemaVersion, ReadPlan]] = {}
        for name, cur in list(self._current.items()):
            published = sorted(
                (v for v in self._versions[name].values() if v.fingerprint == cur.fingerprint),
                key=lambda v: v.version or 0,
            )
            if published:  # the current schema is a published version: name it so
                cur = cur.renumbered(published[-1].version)
                self._current[name] = cur
            for sv in (*sorted(self._versions[name].values(), key=lambda v: v.version or 0), cur):
                self._known[sv.single_object_header[2:]] = (sv, self.read_plan(sv))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._current)

    def current(self, name: str) -> SchemaVersion:
        try:
            return self._current[name]
        except KeyError:
            raise KeyError(f"no schema named {name!r}; known: {sorted(self._current)}") from None

    def versions(self, name: str) -> dict[int, SchemaVersion]:
        """Every published version of ``name`` by number (empty if none is recorded)."""
        self.current(name)
        return dict(self._versions[name])

    def version(self, name: str, number: int | None) -> SchemaVersion:
        if number is None:
            return self.current(name)
        try:
            return self._versions[name][number]
        except KeyError:
            raise KeyError(f"no version {number} of {name}") from None

    def by_fingerprint(self, fp: int) -> SchemaVersion | None:
        """The known version with this CRC-64-AVRO fingerprint, if any."""
        known = self._known.get(fp.to_bytes(8, "little"))
        return known[0] if known else None

    def plan_for_header(self, fp: bytes) -> ReadPlan | None:
        """The read plan for the 8 little-endian fingerprint bytes of a message header."""
        known = self._known.get(fp)
        return known[1] if known else None

    def read_plan(self, writer: SchemaVersion, label: str | None = None) -> ReadPlan:
        """How to read data written with ``writer`` into the current schema of its name."""
        current = self.current(writer.name)
        reader = None if writer.fingerprint == current.fingerprint else current.parsed
        return ReadPlan(
            label or writer.label,
            writer.name,
            writer.parsed,
            reader,
            EVENT_BY_SCHEMA.get(writer.name),
            writer.segments if reader is None else None,
        )


@cache
def default_catalog() -> SchemaCatalog:
    """The packaged ``.avsc`` files and their ``history/``."""
    return SchemaCatalog(
        (schema_json(name) for name in SCHEMA_NAMES),
        ((number, schema) for name in SCHEMA_NAMES for number, schema in history(name).items()),
    )


# --- codecs -------------------------------------------------------------------------


def _hex_prefix(data: bytes, n: int = 12) -> str:
    return data[:n].hex(" ") + (" ..." if len(data) > n else "")


def _write(header: bytes, sv: SchemaVersion, record: Mapping[str, Any]) -> bytes:
    buf = BytesIO()
    buf.write(header)
    try:
        if sv.segments is None:
            schemaless_writer(buf, sv.parsed, record)
        else:
            _write_segments(buf, sv.segments, record)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, struct.error) as exc:
        raise ValueError(f"cannot encode {sv.label}: {exc}") from exc
    return buf.getvalue()


def _read(plan: ReadPlan, data: bytes, offset: int) -> dict[str, Any]:
    fo = BytesIO(data)
    fo.seek(offset)
    try:
        if plan.segments is None:
            record = schemaless_reader(fo, plan.writer, plan.reader)
        else:
            record = _read_segments(plan.segments, data, fo)
    except SchemaResolutionError as exc:
        raise UndecodableEvent(
            f"{plan.label} cannot be read as the current {plan.name}: {exc}"
        ) from exc
    except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError...
        raise UndecodableEvent(
            f"{plan.label}: Avro body is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    if fo.tell() != len(data):
        raise UndecodableEvent(
            f"{plan.label}: {len(data) - fo.tell()} bytes left after the Avro body; "
            "the message is corrupt or not one event"
        )
    if not isinstance(record, dict):
        raise UndecodableEvent(f"{plan.label}: body is not an Avro record")
    return record


def _check_bytes(data: object) -> bytes:
    if data is None:
        raise UndecodableEvent("message has no value (a tombstone?), not an event")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UndecodableEvent(f"an event is bytes, not {type(data).__name__}")
    return bytes(data) if not isinstance(data, bytes) else data


class Codec:
    """Encodes events to bytes and back; subclasses choose the framing.

    Decoding raises :class:`UndecodableEvent` for anything that is not a valid
    event (so the runner sends it to the DLQ); registry outages raise
    :class:`DependencyUnavailable` instead, so the message is retried.
    """

    def __init__(self, catalog: SchemaCatalog | None = None) -> None:
        self.catalog = catalog or default_catalog()

    def encode(self, event: Event) -> bytes:
        return self.encode_record(event.full_name(), event.to_record())

    def encode_record(
        self, name: str, record: Mapping[str, Any], *, version: int | None = None
    ) -> bytes:
        """Encode a plain record of schema ``name`` (default: its current version)."""
        raise NotImplementedError

    @overload
    def decode(self, data: Buffer) -> Event: ...

    @overload
    def decode(self, data: Buffer, expected: type[E]) -> E: ...

    def decode(self, data: Buffer, expected: type[Event] | None = None) -> Event:
        raw = _check_bytes(data)
        plan, offset = self._plan(raw)
        cls = plan.event_type
        if cls is None:
            raise UndecodableEvent(f"{plan.label} is not a ragstream event")
        if expected is not None and not issubclass(cls, expected):
            raise UndecodableEvent(f"expected {expected.full_name()}, got {plan.label}")
        record = _read(plan, raw, offset)
        try:
            return cls.from_record(record)
        except (TypeError, ValueError) as exc:
            raise UndecodableEvent(f"{plan.label}: {exc}") from exc

    def decode_record(self, data: Buffer) -> tuple[str, dict[str, Any]]:
        """The full schema name and the plain record, read with the current schema."""
        raw = _check_bytes(data)
        plan, offset = self._plan(raw)
        return plan.name, _read(plan, raw, offset)

    def close(self) -> None:
        """Release connections; the codec is unusable afterwards."""

    def _plan(self, data: bytes) -> tuple[ReadPlan, int]:
        raise NotImplementedError

    def _single_object_plan(self, data: bytes) -> tuple[ReadPlan, int]:
        if len(data) < _SINGLE_OBJECT_HEADER:
            raise UndecodableEvent(
                f"truncated single-object header: {len(data)} bytes ({_hex_prefix(data)})"
            )
        fp = data[2:_SINGLE_OBJECT_HEADER]
        plan = self.catalog.plan_for_header(fp)
        if plan is None:
            raise UndecodableEvent(
                f"unknown schema fingerprint {int.from_bytes(fp, 'little'):#018x}: "
                "not written by any known version of any ragstream event"
            )
        return plan, _SINGLE_OBJECT_HEADER

    def _not_ours(self, data: bytes) -> UndecodableEvent:
        if not data:
            return UndecodableEvent("empty message, not an event")
        looks = " (looks like JSON)" if data[:1] in (b"{", b"[") else ""
        return UndecodableEvent(
            f"not an Avro-encoded event{looks}: starts with {_hex_prefix(data)}"
        )


class SingleObjectCodec(Codec):
    """Avro single-object encoding; needs no service, every version ships with the code."""

    def encode_record(
        self, name: str, record: Mapping[str, Any], *, version: int | None = None
    ) -> bytes:
        sv = self.catalog.version(name, version)
        return _write(sv.single_object_header, sv, record)

    def _plan(self, data: bytes) -> tuple[ReadPlan, int]:
        if data[:2] == MARKER:
            return self._single_object_plan(data)
        if data[:1] == b"\x00" and len(data) >= _CONFLUENT_HEADER:
            raise UndecodableEvent(
                "message uses the Schema Registry wire format (magic byte 0, schema id "
                f"{int.from_bytes(data[1:5], 'big')}) but no schema_registry_url is configured"
            )
        raise self._not_ours(data)


def _subject(name: str) -> str:
    """RecordNameStrategy: the subject is the record's full name, whatever the topic."""
    return name


class RegistryCodec(Codec):
    """Confluent wire format; schema ids come from the Schema Registry and are cached.

    Encoding only looks the current schema up unless ``auto_register`` is set:
    schemas get into the registry deliberately, through :func:`register_schemas`.
    It also decodes single-object messages, which eases moving a deployment
    onto a registry.
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        *,
        catalog: SchemaCatalog | None = None,
        auto_register: bool = False,
    ) -> None:
        super().__init__(catalog)
        self._client = client
        self._auto_register = auto_register
        self._headers: dict[tuple[str, int | None], bytes] = {}
        self._plans: dict[int, ReadPlan] = {}

    def encode_record(
        self, name: str, record: Mapping[str, Any], *, version: int | None = None
    ) -> bytes:
        header = self._headers.get((name, version))
        sv = self.catalog.version(name, version)
        if header is None:
            header = self._header_for(sv)
            self._headers[(name, version)] = header
        return _write(header, sv, record)

    def close(self) -> None:
        self._client.close()

    def _header_for(self, sv: SchemaVersion) -> bytes:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryError

        subject = _subject(sv.name)
        schema = Schema(json.dumps(sv.schema, separators=(",", ":")), "AVRO")
        schema_id: int | None
        try:
            if self._auto_register:
                schema_id = self._client.register_schema(subject, schema)
            else:
                schema_id = self._client.lookup_schema(subject, schema).schema_id
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DependencyUnavailable(
                    f"{sv.label} is not registered under subject {subject!r} in the Schema "
                    "Registry; register the current schemas first (register_schemas, run by "
                    "`ragstream topics create`)"
                ) from exc
            raise DependencyUnavailable(
                f"Schema Registry refused {sv.label} under subject {subject!r}: {exc}"
            ) from exc
        except Exception as exc:
            raise DependencyUnavailable(f"Schema Registry unreachable: {exc!r}") from exc
        if not isinstance(schema_id, int):
            raise DependencyUnavailable(f"Schema Registry returned no id for {sv.label}")
        return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")

    def _plan(self, data: bytes) -> tuple[ReadPlan, int]:
        if data[:1] == b"\x00":
            if len(data) < _CONFLUENT_HEADER:
                raise UndecodableEvent(
                    f"truncated Schema Registry header: {len(data)} bytes ({_hex_prefix(data)})"
                )
            schema_id = int.from_bytes(data[1:_CONFLUENT_HEADER], "big")
            plan = self._plans.get(schema_id)
            if plan is None:
                plan = self._fetch(schema_id)
                self._plans[schema_id] = plan
            return plan, _CONFLUENT_HEADER
        if data[:2] == MARKER:
            return self._single_object_plan(data)
        raise self._not_ours(data)

    def _fetch(self, schema_id: int) -> ReadPlan:
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UndecodableEvent(
                    f"schema id {schema_id} is unknown to the Schema Registry"
                ) from exc
            raise DependencyUnavailable(
                f"Schema Registry failed to return schema id {schema_id}: {exc}"
            ) from exc
        except Exception as exc:
            raise DependencyUnavailable(f"Schema Registry unreachable: {exc!r}") from exc
        label = f"schema id {schema_id}"
        if (registered.schema_type or "AVRO") != "AVRO":
            raise UndecodableEvent(f"{label} is a {registered.schema_type} schema, not Avro")
        try:
            writer = SchemaVersion.of(json.loads(registered.schema_str or ""))
        except Exception as exc:
            raise UndecodableEvent(f"{label} is not a usable Avro record schema: {exc}") from exc
        if writer.name not in self.catalog.names:
            raise UndecodableEvent(f"{label} is {writer.name}, not a ragstream event")
        return self.catalog.read_plan(writer, f"{writer.name} ({label})")


# --- construction ---------------------------------------------------------------------


def registry_client(settings: Settings) -> SchemaRegistryClient:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    if settings.schema_registry_url is None:
        raise ValueError("schema_registry_url is not set")
    return SchemaRegistryClient(
        {"url": settings.schema_registry_url, "timeout": _REGISTRY_TIMEOUT_S}
    )


def make_codec(settings: Settings, *, auto_register: bool = False) -> Codec:
    """The codec the settings call for: registry framing if a URL is set."""
    if settings.schema_registry_url is None:
        return SingleObjectCodec()
    return RegistryCodec(registry_client(settings), auto_register=auto_register)


def register_schemas(settings: Settings, *, catalog: SchemaCatalog | None = None) -> dict[str, int]:
    """Register every current schema under its record-name subject; subject -> id.

    Idempotent: registering an already registered schema returns its id. Without a
    registry there is nothing to register (single-object encoding carries the
    fingerprint) and this returns an empty dict.
    """
    from confluent_kafka.schema_registry import Schema, SchemaRegistryError

    if settings.schema_registry_url is None:
        return {}
    catalog = catalog or default_catalog()
    ids: dict[str, int] = {}
    with registry_client(settings) as client:
        for name in catalog.names:
            sv = catalog.current(name)
            subject = _subject(name)
            schema = Schema(json.dumps(sv.schema, separators=(",", ":")), "AVRO")
            try:
                schema_id = client.register_schema(subject, schema)
            except SchemaRegistryError as exc:
                if exc.http_status_code in (409, 422):  # incompatible or invalid
                    raise PermanentError(
                        f"Schema Registry rejects {sv.label} under {subject!r}: {exc}"
                    ) from exc
                raise DependencyUnavailable(
                    f"Schema Registry failed to register {sv.label}: {exc}"
                ) from exc
            except Exception as exc:
                raise DependencyUnavailable(f"Schema Registry unreachable: {exc!r}") from exc
            if not isinstance(schema_id, int):
                raise DependencyUnavailable(f"Schema Registry returned no id for {sv.label}")
            ids[subject] = schema_id
    return ids
