"""Have ragstream ingest one of your objects by publishing a DocumentUploaded event.

A producer for other services: it needs confluent-kafka (with its Avro support,
``pip install "confluent-kafka[avro]"``, which brings fastavro) and the schema
file ``DocumentUploaded.avsc`` that ships with ragstream, nothing of ragstream
itself. Copy it into your service and adapt it.

    python publish_upload_event.py s3://my-bucket/reports/q3.pdf \\
        --bootstrap localhost:9092 --tenant acme --external-id reports/q3.pdf

The event leaves ``document_id``, ``job_id`` (and, unless you pass them,
``blob_sha256`` and ``size_bytes``) null: ragstream reads the object, records its
hash and gives the document its ids. With ``--external-id``, new content under the
same id later becomes the next version of the same document. Find the document
with ``GET /v1/documents?external_id=...``; an object that cannot be read ends
``failed`` with the reason, and the event in ``documents.uploaded.dlq``.

Wire format: Avro single-object encoding by default (what ragstream uses without a
Schema Registry), or the Schema Registry's with ``--schema-registry URL``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "ragstream/schemas/DocumentUploaded.avsc"
SINGLE_OBJECT_MARKER = b"\xc3\x01"


def build_event(args: argparse.Namespace) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "event_id": str(uuid.uuid4()),  # unique per event: redeliveries of it are deduplicated
        "schema_version": 3,
        "document_id": None,
        "job_id": None,
        "tenant": args.tenant,
        "blob_sha256": args.sha256,
        "blob_uri": args.uri,
        "filename": args.filename or args.uri.rstrip("/").rsplit("/", 1)[-1],
        "size_bytes": args.size,
        "parser": "local",
        "metadata": dict(pair.split("=", 1) for pair in args.metadata),
        "external_id": args.external_id,
        "uploaded_at": now,
        "emitted_at": now,
        "part_index": None,
        "part_count": None,
        "page_start": None,
        "page_end": None,
    }


def single_object(schema_text: str, record: dict[str, object]) -> bytes:
    """Avro single-object encoding: marker, CRC-64-AVRO fingerprint (little-endian), body."""
    schema = parse_schema(json.loads(schema_text))
    canonical = to_parsing_canonical_form(schema)
    # fastavro gives the fingerprint's 8 bytes in wire (little-endian) order, as hex.
    crc = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    body = io.BytesIO()
    schemaless_writer(body, schema, record)
    return SINGLE_OBJECT_MARKER + crc + body.getvalue()


def registry_encoded(schema_text: str, record: dict[str, object], url: str, topic: str) -> bytes:
    from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(
        SchemaRegistryClient({"url": url}),
        schema_text,
        conf={"subject.name.strategy": record_subject_name_strategy},
    )
    return serializer(record, SerializationContext(topic, MessageField.VALUE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="s3://bucket/key, an allow-listed https:// URL, ...")
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--topic", default="documents.uploaded")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--external-id", default=None)
    parser.add_argument("--filename", default=None)
    parser.add_argument("--sha256", default=None, help="checked against the object when given")
    parser.add_argument("--size", type=int, default=None, help="checked when given")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--schema-registry", default=None, metavar="URL")
    args = parser.parse_args(argv)

    schema_text = args.schema.read_text()
    record = build_event(args)
    if args.schema_registry:
        value = registry_encoded(schema_text, record, args.schema_registry, args.topic)
    else:
        value = single_object(schema_text, record)
    delivered: list[object] = []
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    key = (args.external_id or args.uri).encode()
    producer.produce(args.topic, key=key, value=value, on_delivery=lambda e, m: delivered.append(e))
    producer.flush(30)
    if not delivered or delivered[0] is not None:
        print(f"not delivered: {delivered[0] if delivered else 'timed out'}", file=sys.stderr)
        return 1
    print(json.dumps({"event_id": record["event_id"], "blob_uri": args.uri}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
