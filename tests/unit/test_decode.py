"""The runner's step 1 without a broker: records to events, and which ones are failures."""

from __future__ import annotations

import uuid

import pytest

from ragstream.consumers.base import Incoming
from ragstream.consumers.decode import decode
from ragstream.errors import DependencyUnavailable, InvalidEvent, UndecodableEvent
from ragstream.schemas.codec import SingleObjectCodec
from ragstream.schemas.events import DocumentParsed, DocumentUploaded, utc_now
from tests.events import document_parsed

CODEC = SingleObjectCodec()


def _record(value: bytes) -> Incoming:
    return Incoming("t", 0, 1, None, value, [])


def test_a_good_record_becomes_its_event() -> None:
    event = document_parsed(str(uuid.uuid4()))
    m = _record(CODEC.encode(event))
    assert decode(m, CODEC, DocumentParsed) is None and m.event == event


def test_bytes_of_no_event_or_of_another_contract_are_undecodable() -> None:
    m = _record(b"not avro at all")
    assert isinstance(decode(m, CODEC, DocumentParsed), UndecodableEvent) and m.event is None
    uploaded = DocumentUploaded(
        document_id=None, job_id=None, tenant="t", blob_sha256=None, blob_uri="s3://b/k",
        size_bytes=None, uploaded_at=utc_now(),
    )  # fmt: skip
    assert isinstance(decode(_record(CODEC.encode(uploaded)), CODEC, DocumentParsed), Exception)


def test_a_document_id_that_is_no_uuid_leaves_no_event_to_mark_failed() -> None:
    m = _record(CODEC.encode(document_parsed("not-a-uuid")))
    rejected = decode(m, CODEC, DocumentParsed)
    assert isinstance(rejected, InvalidEvent) and "document_id" in rejected.message
    assert m.event is None


def test_a_retryable_codec_error_propagates_to_be_retried() -> None:
    class Down(SingleObjectCodec):
        def decode(self, data: object, expected: object = None) -> object:  # type: ignore[override]
            raise DependencyUnavailable("schema registry down")

    with pytest.raises(DependencyUnavailable):
        decode(_record(b"x"), Down(), DocumentParsed)
