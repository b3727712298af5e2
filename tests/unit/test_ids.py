"""Pinned ids: a change of namespace or name format would orphan every stored row."""

import uuid

from ragstream import ids

DOC = uuid.UUID("45464f3e-08d0-5516-9ea5-728784352927")


def test_document_id_is_pinned() -> None:
    assert ids.document_id("default", "ab" * 32) == DOC
    assert ids.document_id("default", "AB" * 32) == DOC  # hex case does not matter


def test_document_id_depends_on_tenant_and_content() -> None:
    assert ids.document_id("other", "ab" * 32) != DOC
    assert ids.document_id("default", "cd" * 32) != DOC


def test_chunk_embedding_event_job_ids_are_pinned() -> None:
    chunk = ids.chunk_id(DOC, "1", 0)
    assert chunk == uuid.UUID("fe75fd75-e32e-5fd4-a3b6-64ae135ce0cc")
    assert ids.embedding_id(chunk, "all-MiniLM-L6-v2") == uuid.UUID(
        "738d2349-954e-5f2a-ae7f-4ab94f354013"
    )
    assert ids.event_id("DocumentUploaded", DOC, "j") == uuid.UUID(
        "ef347757-e721-5708-adee-f82634e5ce04"
    )
    assert ids.job_id(DOC, "k") == uuid.UUID("9663dac2-1df7-52b6-8b8f-0788d6d8a9e6")


def test_ids_are_version_5() -> None:
    assert DOC.version == 5
    assert ids.chunk_id(DOC, "1", 1) != ids.chunk_id(DOC, "1", 0)
    assert ids.chunk_id(DOC, "2", 0) != ids.chunk_id(DOC, "1", 0)
