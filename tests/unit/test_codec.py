from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any
from urllib.parse import unquote, urlsplit

import fastavro
import numpy as np
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from ragstream.errors import DependencyUnavailable, UndecodableEvent
from ragstream.schemas.codec import (
    MARKER,
    Codec,
    RegistryCodec,
    SchemaCatalog,
    SingleObjectCodec,
    canonical_form,
    crc64_avro,
    default_catalog,
    fingerprint,
    make_codec,
    register_schemas,
)
from ragstream.schemas.events import (
    EVENT_BY_SCHEMA,
    EVENT_TYPES,
    SCHEMA_BY_EVENT,
    SCHEMA_NAMES,
    ChunkCreated,
    ChunkEmbedded,
    DocumentParsed,
    DocumentUploaded,
    Event,
    history,
    parsed_schema,
    schema_json,
)
from ragstream.settings import Settings

T0 = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)


def f32(x: float) -> float:
    """What a Python float becomes after a trip through an Avro ``float``."""
    value: float = struct.unpack("<f", struct.pack("<f", x))[0]
    return value


def fixed(n: int) -> dict[str, Any]:
    """Event id and emission time, fixed so that separately built samples compare equal."""
    return {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "emitted_at": T0 + timedelta(seconds=n),
    }


def sample_events() -> list[Event]:
    return [
        DocumentUploaded(
            document_id="doc-1",
            job_id="job-1",
            tenant="acme",
            blob_sha256="ab" * 32,
            blob_uri="file:///blobs/abab",
            filename="report.pdf",
            size_bytes=5 * 2**30,  # needs a long
            parser="llamaparse",
            metadata={"team": "search", "lang": "en"},
            uploaded_at=T0,
            **fixed(1),
        ),
        DocumentParsed(
            document_id="doc-1",
            job_id="job-1",
            tenant="acme",
            text_blob_sha256="cd" * 32,
            text_blob_uri="file:///blobs/cdcd",
            content_type="application/pdf",
            parser="local",
            parser_version="pypdfium2-4.30",
            page_count=12,
            block_count=88,
            parsed_at=T0,
            **fixed(2),
        ),
        ChunkCreated(
            chunk_id="chunk-1",
            document_id="doc-1",
            job_id="job-1",
            tenant="acme",
            chunk_index=3,
            chunk_count=10,
            text="Zürich — ünïcode ✓ " * 40,
            token_count=256,
            pages=(2, 3),
            heading_path=("Intro", "Scope"),
            chunker_version="1",
            chunker_config_hash="f00d",
            parser="local",
            parser_version="1.0",
            created_at=T0,
            **fixed(3),
        ),
        ChunkEmbedded(
            embedding_id="emb-1",
            chunk_id="chunk-1",
            document_id="doc-1",
            job_id="job-1",
            tenant="acme",
            chunk_index=3,
            chunk_count=10,
            model="all-MiniLM-L6-v2",
            model_version="1",
            dimensions=4,
            vector=(0.5, -1.25, f32(3.0e-5), 0.0),
            embedded_at=T0,
            **fixed(4),
        ),
    ]


def minimal_events() -> list[Event]:
    """Optional fields left to their defaults, arrays empty."""
    return [
        DocumentUploaded(
            document_id="d",
            job_id="j",
            tenant="t",
            blob_sha256="0" * 64,
            blob_uri="u",
            size_bytes=0,
            uploaded_at=T0,
        ),
        DocumentParsed(
            document_id="d",
            job_id="j",
            tenant="t",
            text_blob_sha256="0" * 64,
            text_blob_uri="u",
            content_type="text/plain",
            parser="local",
            parser_version="1",
            block_count=0,
            parsed_at=T0,
        ),
        ChunkCreated(
            chunk_id="c",
            document_id="d",
            job_id="j",
            tenant="t",
            chunk_index=0,
            chunk_count=1,
            text="",
            token_count=0,
            pages=(),
            heading_path=(),
            chunker_version="1",
            chunker_config_hash="h",
            parser="local",
            parser_version="1",
            created_at=T0,
        ),
        ChunkEmbedded(
            embedding_id="e",
            chunk_id="c",
            document_id="d",
            job_id="j",
            tenant="t",
            chunk_index=0,
            chunk_count=1,
            model="m",
            model_version="1",
            dimensions=0,
            vector=(),
            embedded_at=T0,
        ),
    ]


def fastavro_body(schema: Any, record: dict[str, Any]) -> bytes:
    buf = BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# --- CRC-64-AVRO ---------------------------------------------------------------------

# From Apache Avro's share/test/data/schema-tests.txt (fingerprints as Java longs). One
# input's boolean default is written there as the string "true", which fastavro rightly
# refuses; it is a boolean here, which changes neither canonical form nor fingerprint.
AVRO_TEST_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"null"}', '"null"', 7195948357588979594),
    ('"boolean"', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"string"', '"string"', -8142146995180207161),
    ("[  ]", "[]", -1241056759729112623),
    ('[ "int" , {"type":"boolean"} ]', '["int","boolean"]', 5392556393470105090),
    (
        '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    (
        '{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        '{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},'
        ' {"order":"descending","name":"f2","doc":"Hello","type":"int"}],'
        ' "type":"record", "name":"foo" }',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},'
        '{"name":"f2","type":"int"}]}',
        -4860222112080293046,
    ),
    (
        '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar",'
        ' "symbols":["A1", "A2"]}',
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    (
        '{"name":"foo","type":"fixed","size":15}',
        '{"name":"foo","type":"fixed","size":15}',
        1756455273707447556,
    ),
    (
        '{ "values":"string", "type":"map"}',
        '{"type":"map","values":"string"}',
        -8732877298790414990,
    ),
    (
        '{"name":"PigValue","type":"record",'
        ' "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value",'
        '"type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]


@pytest.mark.parametrize(("schema", "canonical", "expected"), AVRO_TEST_VECTORS)
def test_crc64_avro_matches_the_avro_test_vectors(
    schema: str, canonical: str, expected: int
) -> None:
    assert signed(crc64_avro(canonical.encode())) == expected
    assert canonical_form(json.loads(schema)) == canonical
    assert signed(fingerprint(json.loads(schema))) == expected


def test_fingerprint_of_null_is_the_documented_value_and_header_is_little_endian() -> None:
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A
    # fastavro returns the hex of the little-endian bytes: the single-object header order
    assert fastavro_fingerprint('"null"', "CRC-64-AVRO") == "8a8f25cce724dd63"
    assert crc64_avro(b'"null"').to_bytes(8, "little") == bytes.fromhex("8a8f25cce724dd63")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_fingerprint_agrees_with_fastavro_for_our_schemas(name: str) -> None:
    pcf = to_parsing_canonical_form(schema_json(name))
    ours = fingerprint(schema_json(name)).to_bytes(8, "little")
    assert ours == bytes.fromhex(fastavro_fingerprint(pcf, "CRC-64-AVRO"))


# --- single-object encoding ----------------------------------------------------------


@pytest.fixture
def codec() -> SingleObjectCodec:
    return SingleObjectCodec()


@pytest.mark.parametrize(
    "event",
    sample_events() + minimal_events(),
    ids=[f"{type(e).__name__}-{kind}" for kind in ("full", "minimal") for e in sample_events()],
)
def test_round_trip(codec: SingleObjectCodec, event: Event) -> None:
    data = codec.encode(event)
    assert codec.decode(data) == event
    assert codec.decode(data, type(event)) == event
    assert codec.decode(data, Event) == event


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_wire_format_is_avro_single_object_encoding(codec: SingleObjectCodec, event: Event) -> None:
    name = type(event).SCHEMA_NAME
    data = codec.encode(event)
    assert data[:2] == b"\xc3\x01" == MARKER
    pcf = to_parsing_canonical_form(schema_json(name))
    assert data[2:10] == bytes.fromhex(fastavro_fingerprint(pcf, "CRC-64-AVRO"))
    assert data[10:] == fastavro_body(parsed_schema(name), event.to_record())


def test_vectors_are_float32(codec: SingleObjectCodec) -> None:
    event = sample_events()[3]
    assert isinstance(event, ChunkEmbedded)
    precise = ChunkEmbedded.from_record({**event.to_record(), "vector": (0.1, 0.2, 0.3, 0.4)})
    decoded = codec.decode(codec.encode(precise), ChunkEmbedded)
    assert decoded.vector == tuple(f32(x) for x in (0.1, 0.2, 0.3, 0.4))


def test_numpy_vectors_are_accepted(codec: SingleObjectCodec) -> None:
    vector = np.linspace(-1, 1, 384, dtype=np.float32)
    event = ChunkEmbedded.from_record(
        {**sample_events()[3].to_record(), "vector": vector, "dimensions": 384}
    )
    assert type(event.vector) is tuple
    assert type(event.vector[0]) is float
    assert codec.decode(codec.encode(event), ChunkEmbedded).vector == tuple(vector.tolist())


def packed_schema() -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Vectors",
        "namespace": "test",
        "fields": [
            {"name": "before", "type": ["null", "string"]},
            {"name": "f", "type": {"type": "array", "items": "float"}},
            {"name": "d", "type": {"type": "array", "items": "double"}},
            {"name": "m", "type": {"type": "map", "values": "string"}},
            {"name": "after", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }


def test_packed_float_arrays_write_the_same_bytes_as_fastavro() -> None:
    schema = packed_schema()
    codec = SingleObjectCodec(SchemaCatalog([schema]))
    for f, d in [((), ()), ((1.5,), (1e300,)), (tuple(f32(i / 7) for i in range(300)), (-0.0,))]:
        record = {"before": "x", "f": f, "d": d, "m": {"k": "v"}, "after": T0}
        data = codec.encode_record("test.Vectors", record)
        assert data[10:] == fastavro_body(fastavro.parse_schema(schema), record)
        name, decoded = codec.decode_record(data)
        assert name == "test.Vectors"
        assert decoded == {**record, "f": f, "d": d}


def test_packed_arrays_read_multi_block_encodings() -> None:
    """Other writers may split an array into blocks, with a negative count and byte size."""
    schema = packed_schema()
    codec = SingleObjectCodec(SchemaCatalog([schema]))
    header = codec.encode_record(
        "test.Vectors", {"before": None, "f": (), "d": (), "m": {}, "after": T0}
    )[:10]

    def long(n: int) -> bytes:
        buf = BytesIO()
        fastavro.schemaless_writer(buf, "long", n)
        return buf.getvalue()

    body = (
        b"\x00"  # before: null
        + long(2) + struct.pack("<2f", 1.0, 2.0)
        + long(-1) + long(4) + struct.pack("<f", 3.0)
        + b"\x00"
        + long(1) + struct.pack("<d", 4.0) + b"\x00"
        + b"\x00"  # empty map
        + long(int(T0.timestamp() * 1000))
    )  # fmt: skip
    _, decoded = codec.decode_record(header + body)
    assert decoded == {"before": None, "f": (1.0, 2.0, 3.0), "d": (4.0,), "m": {}, "after": T0}
    with pytest.raises(UndecodableEvent, match="truncated or corrupt"):
        codec.decode_record(header + body[:3] + long(1000) + body[3:])


def test_schemas_with_named_nested_types_are_not_split() -> None:
    schema = {
        "type": "record",
        "name": "N",
        "fields": [
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "f", "type": {"type": "array", "items": "float"}},
            {"name": "e2", "type": "E"},
        ],
    }
    codec = SingleObjectCodec(SchemaCatalog([schema]))
    record = {"e": "B", "f": (0.5,), "e2": "A"}
    data = codec.encode_record("N", record)
    assert data[10:] == fastavro_body(fastavro.parse_schema(schema), record)
    assert codec.decode_record(data) == ("N", {"e": "B", "f": [0.5], "e2": "A"})


# --- decoding errors -----------------------------------------------------------------


def encoded(event_index: int = 2) -> bytes:
    return SingleObjectCodec().encode(sample_events()[event_index])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty message"),
        (b'{"document_id": "x"}', "not an Avro-encoded event \\(looks like JSON\\)"),
        (b"\x89PNG\r\n\x1a\n", "not an Avro-encoded event: starts with 89 50 4e 47"),
        (b"\xc3\x01\x00\x01", "truncated single-object header: 4 bytes"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown schema fingerprint 0x0000000000000000"),
        (b"\x00\x00\x00\x00\x07abc", "Schema Registry wire format .* schema id 7.* no schema_regi"),
        (encoded()[:-1], "truncated or corrupt"),
        (encoded()[:40], "truncated or corrupt"),
        (encoded()[:10], "truncated or corrupt"),
        (encoded() + b"\x00", "1 bytes left after the Avro body"),
        (encoded(3)[:-3], "truncated or corrupt"),
        (encoded()[:10] + b"\xff" * 30, "truncated or corrupt"),
    ],
)
def test_undecodable_messages(codec: SingleObjectCodec, data: bytes, match: str) -> None:
    with pytest.raises(UndecodableEvent, match=match):
        codec.decode(data)


def test_non_bytes_are_undecodable(codec: SingleObjectCodec) -> None:
    with pytest.raises(UndecodableEvent, match="tombstone"):
        codec.decode(None)  # type: ignore[call-overload]
    with pytest.raises(UndecodableEvent, match="not str"):
        codec.decode("hello")  # type: ignore[call-overload]
    assert codec.decode(bytearray(encoded())) == sample_events()[2]
    assert codec.decode(memoryview(encoded())) == sample_events()[2]


def test_wrong_event_type(codec: SingleObjectCodec) -> None:
    with pytest.raises(
        UndecodableEvent,
        match=r"expected ragstream\.events\.ChunkEmbedded, got ragstream\.events\.ChunkCreated v1",
    ):
        codec.decode(encoded(2), ChunkEmbedded)


def test_undecodable_is_permanent(codec: SingleObjectCodec) -> None:
    with pytest.raises(UndecodableEvent) as info:
        codec.decode(b"junk")
    assert info.value.retryable is False


def test_valid_avro_but_invalid_event(codec: SingleObjectCodec) -> None:
    record = sample_events()[3].to_record()
    bad_dims = codec.encode_record("ragstream.events.ChunkEmbedded", {**record, "dimensions": 3})
    with pytest.raises(UndecodableEvent, match="vector has 4 values but dimensions is 3"):
        codec.decode(bad_dims)
    record = sample_events()[0].to_record()
    bad_parser = codec.encode_record("ragstream.events.DocumentUploaded", {**record, "parser": "x"})
    with pytest.raises(UndecodableEvent, match="parser must be one of"):
        codec.decode(bad_parser)


def test_encoding_errors_name_the_event(codec: SingleObjectCodec) -> None:
    record = sample_events()[2].to_record()
    with pytest.raises(ValueError, match=r"cannot encode ragstream\.events\.ChunkCreated v1"):
        codec.encode_record("ragstream.events.ChunkCreated", {**record, "text": None})
    with pytest.raises(ValueError, match="cannot encode"):
        codec.encode_record("ragstream.events.ChunkEmbedded", {**record, "vector": ["x"]})
    with pytest.raises(KeyError, match="no schema named"):
        codec.encode_record("ragstream.events.Nope", record)


# --- events ----------------------------------------------------------------------------


def test_registry_maps_classes_and_schema_names() -> None:
    assert SCHEMA_NAMES == ("DocumentUploaded", "DocumentParsed", "ChunkCreated", "ChunkEmbedded")
    for cls in EVENT_TYPES:
        assert SCHEMA_BY_EVENT[cls] == f"ragstream.events.{cls.__name__}"
        assert EVENT_BY_SCHEMA[SCHEMA_BY_EVENT[cls]] is cls
        assert parsed_schema(cls.SCHEMA_NAME)["name"] == cls.full_name()


@pytest.mark.parametrize("cls", EVENT_TYPES)
def test_dataclass_fields_match_the_schema(cls: type[Event]) -> None:
    schema_fields = [f["name"] for f in schema_json(cls.SCHEMA_NAME)["fields"]]
    event = next(e for e in sample_events() if type(e) is cls)
    assert sorted(event.to_record()) == sorted(schema_fields)
    for f in schema_json(cls.SCHEMA_NAME)["fields"]:
        assert f.get("doc"), f"{cls.SCHEMA_NAME}.{f['name']} has no doc"


def test_datetimes_must_be_aware_and_become_utc_millis() -> None:
    base = sample_events()[1].to_record()
    with pytest.raises(ValueError, match="parsed_at is a naive datetime"):
        DocumentParsed.from_record({**base, "parsed_at": datetime(2024, 1, 1)})
    with pytest.raises(TypeError, match="emitted_at must be a datetime"):
        DocumentParsed.from_record({**base, "emitted_at": 1700000000000})
    cest = timezone(timedelta(hours=2))
    event = DocumentParsed.from_record(
        {**base, "parsed_at": datetime(2024, 1, 1, 14, 0, 0, 123456, tzinfo=cest)}
    )
    assert event.parsed_at == datetime(2024, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert event.parsed_at.tzinfo is UTC
    assert event.emitted_at.tzinfo is UTC


def test_defaults() -> None:
    event = minimal_events()[0]
    assert isinstance(event, DocumentUploaded)
    assert (event.filename, event.parser, event.metadata, event.schema_version) == (
        None,
        "local",
        {},
        3,
    )
    assert (event.part_index, event.part_count, event.page_start, event.page_end) == (None,) * 4
    assert len(event.event_id) == 36
    assert event.emitted_at.microsecond % 1000 == 0
    other = minimal_events()[0]
    assert other.event_id != event.event_id


def test_from_record_is_strict() -> None:
    record = sample_events()[1].to_record()
    with pytest.raises(ValueError, match="lacks field 'tenant'"):
        DocumentParsed.from_record({k: v for k, v in record.items() if k != "tenant"})
    with pytest.raises(ValueError, match="unknown fields \\['surprise'\\]"):
        DocumentParsed.from_record({**record, "surprise": 1})


def test_events_are_frozen() -> None:
    event = sample_events()[2]
    assert isinstance(event, ChunkCreated)
    with pytest.raises(AttributeError):
        event.tenant = "other"  # type: ignore[misc]


# --- schema evolution through the codec --------------------------------------------------


def test_old_writer_versions_decode_with_the_current_schema() -> None:
    v1 = {
        "type": "record",
        "name": "Thing",
        "namespace": "test",
        "fields": [
            {"name": "a", "type": "string"},
            {"name": "v", "type": {"type": "array", "items": "float"}},
        ],
    }
    v2 = {
        **v1,
        "fields": [
            *v1["fields"],
            {"name": "b", "type": ["null", "string"], "default": None},
            {"name": "n", "type": "int", "default": 7},
        ],
    }
    codec = SingleObjectCodec(SchemaCatalog([v2], [(1, v1), (2, v2)]))
    old = codec.encode_record("test.Thing", {"a": "x", "v": [0.5]}, version=1)
    assert old[2:10] == fingerprint(v1).to_bytes(8, "little")
    assert codec.decode_record(old) == ("test.Thing", {"a": "x", "v": [0.5], "b": None, "n": 7})
    new = codec.encode_record("test.Thing", {"a": "y", "v": [1.0], "b": "z", "n": 1})
    assert codec.decode_record(new) == ("test.Thing", {"a": "y", "v": (1.0,), "b": "z", "n": 1})
    assert codec.catalog.current("test.Thing").version == 2
    current_fp = codec.catalog.by_fingerprint(fingerprint(v2))
    assert current_fp is not None and current_fp.version == 2


def test_catalog_rejects_history_without_a_current_schema() -> None:
    lone = {"type": "record", "name": "Lone", "fields": []}
    other = {"type": "record", "name": "Other", "fields": []}
    with pytest.raises(ValueError, match="no current Lone"):
        SchemaCatalog([other], [(1, lone)])


def test_default_catalog_knows_every_history_version() -> None:
    catalog = default_catalog()
    for name in SCHEMA_NAMES:
        full = f"ragstream.events.{name}"
        for schema in history(name).values():
            found = catalog.by_fingerprint(fingerprint(schema))
            assert found is not None
            assert found.name == full
        assert catalog.current(full).version == max(history(name))


# --- Schema Registry ----------------------------------------------------------------------


class FakeSchemaRegistry:
    """The few Schema Registry REST endpoints the codec uses, over real HTTP on loopback."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                registry.handle(self, "GET")

            def do_POST(self) -> None:
                registry.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def register(self, subject: str, schema: str) -> int:
        canonical = json.dumps(json.loads(schema), sort_keys=True)
        with self._lock:
            known = {
                json.dumps(json.loads(text), sort_keys=True): sid
                for sid, text in self.schemas.items()
            }
            schema_id = known.get(canonical, len(self.schemas) + 1)
            self.schemas.setdefault(schema_id, schema)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(request.path).path
        self.requests.append((method, path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        body: Any = None
        if method == "POST":
            length = int(request.headers.get("Content-Length") or 0)
            body = json.loads(request.rfile.read(length) or b"null")
        status, payload = self.route(method, parts, body)
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def route(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "subjects"
            and parts[2] == "versions"
        ):
            return 200, {"id": self.register(parts[1], body["schema"])}
        if method == "POST" and len(parts) == 2 and parts[0] == "subjects":
            subject = parts[1]
            if subject not in self.subjects:
                return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
            wanted = json.loads(body["schema"])
            for version, schema_id in enumerate(self.subjects[subject], start=1):
                if json.loads(self.schemas[schema_id]) == wanted:
                    return 200, {
                        "subject": subject,
                        "id": schema_id,
                        "version": version,
                        "schema": self.schemas[schema_id],
                    }
            return 404, {"error_code": 40403, "message": "Schema not found"}
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            schema_id = int(parts[2])
            if schema_id not in self.schemas:
                return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}
            return 200, {"schema": self.schemas[schema_id]}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


@pytest.fixture
def registry() -> Iterator[FakeSchemaRegistry]:
    server = FakeSchemaRegistry()
    yield server
    server.stop()


@pytest.fixture
def settings(registry: FakeSchemaRegistry) -> Settings:
    return Settings(schema_registry_url=registry.url)


def test_make_codec_picks_the_framing(settings: Settings) -> None:
    plain = make_codec(Settings(schema_registry_url=None))
    assert isinstance(plain, SingleObjectCodec)
    with_registry = make_codec(settings)
    assert isinstance(with_registry, RegistryCodec)
    with_registry.close()


def test_register_schemas_uses_record_name_subjects(
    registry: FakeSchemaRegistry, settings: Settings
) -> None:
    ids = register_schemas(settings)
    subjects = {f"ragstream.events.{name}" for name in SCHEMA_NAMES}
    assert set(ids) == subjects == set(registry.subjects)
    assert sorted(ids.values()) == [1, 2, 3, 4]
    for subject, schema_id in ids.items():
        assert json.loads(registry.schemas[schema_id])["name"] == subject.rsplit(".", 1)[1]
    assert register_schemas(settings) == ids  # idempotent
    assert all(len(v) == 1 for v in registry.subjects.values())
    assert register_schemas(Settings(schema_registry_url=None)) == {}


@pytest.mark.parametrize("index", range(4))
def test_registry_round_trip(registry: FakeSchemaRegistry, settings: Settings, index: int) -> None:
    ids = register_schemas(settings)
    event = sample_events()[index]
    subject = SCHEMA_BY_EVENT[type(event)]
    codec = make_codec(settings)
    try:
        data = codec.encode(event)
        assert data[0] == 0
        assert int.from_bytes(data[1:5], "big") == ids[subject]
        assert data[5:] == fastavro_body(parsed_schema(type(event).SCHEMA_NAME), event.to_record())
        assert codec.decode(data) == event
        assert codec.decode(data, type(event)) == event
        assert registry.count("GET", "/schemas/ids/") == 1  # cached after the first decode
        lookups = registry.count("POST", f"/subjects/{subject}")
        codec.encode(event)
        assert registry.count("POST", f"/subjects/{subject}") == lookups  # id cached too
    finally:
        codec.close()


def test_no_registration_unless_asked(registry: FakeSchemaRegistry, settings: Settings) -> None:
    codec = make_codec(settings)
    try:
        with pytest.raises(DependencyUnavailable, match="not registered under subject"):
            codec.encode(sample_events()[0])
    finally:
        codec.close()
    assert registry.subjects == {}
    assert registry.count("POST", "/subjects/ragstream.events.DocumentUploaded/versions") == 0


def test_auto_register(registry: FakeSchemaRegistry) -> None:
    client = SchemaRegistryClient({"url": registry.url})
    codec = RegistryCodec(client, auto_register=True)
    try:
        data = codec.encode(sample_events()[2])
        assert codec.decode(data) == sample_events()[2]
    finally:
        codec.close()
    assert list(registry.subjects) == ["ragstream.events.ChunkCreated"]


def test_registry_decodes_older_writer_schemas(
    registry: FakeSchemaRegistry, settings: Settings
) -> None:
    current = schema_json("DocumentUploaded")
    older = {
        **current,
        "fields": [f for f in current["fields"] if f["name"] not in ("filename", "metadata")],
    }
    old_id = registry.register("ragstream.events.DocumentUploaded", json.dumps(older))
    event = sample_events()[0]
    assert isinstance(event, DocumentUploaded)
    record = event.to_record()
    body = fastavro_body(fastavro.parse_schema(older), record)
    codec = make_codec(settings)
    try:
        decoded = codec.decode(b"\x00" + old_id.to_bytes(4, "big") + body, DocumentUploaded)
    finally:
        codec.close()
    assert decoded.filename is None
    assert decoded.metadata == {}
    assert decoded.document_id == event.document_id
    assert decoded.uploaded_at == event.uploaded_at


def test_registry_decode_errors(registry: FakeSchemaRegistry, settings: Settings) -> None:
    foreign = {"type": "record", "name": "Thing", "namespace": "com.other", "fields": []}
    foreign_id = registry.register("com.other.Thing", json.dumps(foreign))
    codec = make_codec(settings)
    try:
        with pytest.raises(UndecodableEvent, match="schema id 99 is unknown"):
            codec.decode(b"\x00\x00\x00\x00\x63\x02")
        with pytest.raises(UndecodableEvent, match=r"com\.other\.Thing, not a ragstream event"):
            codec.decode(b"\x00" + foreign_id.to_bytes(4, "big"))
        with pytest.raises(UndecodableEvent, match="truncated Schema Registry header"):
            codec.decode(b"\x00\x00\x01")
        with pytest.raises(UndecodableEvent, match="not an Avro-encoded event"):
            codec.decode(b"hello")
        # single-object messages still decode, which eases a move onto the registry
        assert codec.decode(encoded(1)) == sample_events()[1]
        register_schemas(settings)
        data = codec.encode(sample_events()[1])
        with pytest.raises(UndecodableEvent, match=r"expected ragstream\.events\.ChunkCreated"):
            codec.decode(data, ChunkCreated)
        with pytest.raises(UndecodableEvent, match="truncated or corrupt"):
            codec.decode(data[:-2])
    finally:
        codec.close()


def test_registry_outage_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{port}", "max.retries": 0})
    codec: Codec = RegistryCodec(client)
    try:
        with pytest.raises(DependencyUnavailable, match="unreachable") as info:
            codec.decode(b"\x00\x00\x00\x00\x01\x02")
        assert info.value.retryable is True
        with pytest.raises(DependencyUnavailable, match="unreachable"):
            codec.encode(sample_events()[0])
    finally:
        codec.close()
