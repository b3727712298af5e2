"""Events as a stage receives them, for unit tests that need one without the stage before."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ragstream.schemas.events import DocumentParsed, utc_now


def document_parsed(
    document_id: object, job_id: object | None = None, at: datetime | None = None, **fields: Any
) -> DocumentParsed:
    """A parsed plain-text document of one block, its text in the blob store; ``fields``
    override any of it (the parser, the content type, the blob ...)."""
    at = at or utc_now()
    values: dict[str, Any] = {
        "document_id": str(document_id),
        "job_id": str(job_id or uuid.uuid4()),
        "tenant": "t",
        "text_blob_sha256": "ab" * 32,
        "text_blob_uri": "pg://blobs/" + "ab" * 32,
        "content_type": "text/plain",
        "parser": "text",
        "parser_version": "1",
        "block_count": 1,
        "parsed_at": at,
        **fields,
    }
    return DocumentParsed(**values)
