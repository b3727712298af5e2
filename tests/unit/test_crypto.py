"""Sealing the text of events with a per-document key (crypto-shredding)."""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest

from ragstream import crypto
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import ChunkCreated, utc_now
from ragstream.settings import Settings


def _key(document_id: uuid.UUID | None = None) -> crypto.Key:
    return crypto.Key(document_id or uuid.uuid4(), uuid.uuid4(), os.urandom(32))


def _chunk(document_id: uuid.UUID, text: str = "Zanzibar quokka ledger") -> ChunkCreated:
    return ChunkCreated(
        chunk_id=str(uuid.uuid4()),
        document_id=str(document_id),
        job_id=str(uuid.uuid4()),
        tenant="t",
        chunk_index=0,
        chunk_count=1,
        text=text,
        token_count=3,
        pages=(1,),
        heading_path=("Heron Protocol", "Part two"),
        chunker_version="1",
        chunker_config_hash="h",
        parser="local",
        parser_version="1",
        created_at=utc_now(),
    )


def test_a_sealed_chunk_hides_its_text_and_opens_with_its_key_after_the_codec() -> None:
    key = _key()
    event = _chunk(key.document_id)
    sealed = crypto.seal_chunk(event, key)
    codec = make_codec(Settings())
    wire = codec.encode(sealed)
    for secret in (b"Zanzibar", b"quokka", b"Heron Protocol", b"Part two"):
        assert secret not in wire
    back = codec.decode(wire, ChunkCreated)
    assert crypto.open_chunk(back, {key.document_id: key}) == event


def test_without_its_key_or_with_another_the_text_is_shredded() -> None:
    key = _key()
    sealed = crypto.seal_chunk(_chunk(key.document_id), key)
    with pytest.raises(crypto.Shredded):
        crypto.open_chunk(sealed, {})
    again = _key(key.document_id)  # deleted, then uploaded again: a new key
    with pytest.raises(crypto.Shredded):
        crypto.open_chunk(sealed, {key.document_id: again})
    same_id_other_bytes = crypto.Key(key.document_id, key.key_id, os.urandom(32))
    with pytest.raises(crypto.Shredded):
        crypto.open_chunk(sealed, {key.document_id: same_id_other_bytes})


def test_sealed_text_is_bound_to_its_document() -> None:
    key = _key()
    other = crypto.Key(uuid.uuid4(), key.key_id, key.key)  # the same key under another id
    sealed = key.seal("text of one document")
    with pytest.raises(crypto.Shredded):
        other.open(sealed)


def test_plain_text_written_before_sealing_reads_as_it_is() -> None:
    event = _chunk(uuid.uuid4())
    assert crypto.open_chunk(event, {}) == event
    key = _key()
    assert key.open("plain words") == "plain words"
    nonces = {key.seal("same") for _ in range(5)}
    assert len(nonces) == 5  # a fresh nonce every time
    assert dataclasses.replace(event, text=key.seal("x")).text.startswith(crypto.PREFIX)
