"""``/v1/search``: vector, keyword or hybrid search over the tenant's complete documents."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ragstream import search as searching
from ragstream.api import searchable
from ragstream.api.deps import ServicesDep, TenantDep
from ragstream.api.models import (
    ErrorPublic,
    MetadataPrefix,
    SearchCreate,
    SearchHitPublic,
    SearchPublic,
)
from ragstream.errors import NoVectors
from ragstream.textsearch import Filters

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post(
    "",
    responses={
        400: {"model": ErrorPublic, "description": "A model not searchable here, a bad cursor."},
        401: {"model": ErrorPublic},
        404: {"model": ErrorPublic, "description": "The model has no vectors here."},
        503: {"model": ErrorPublic},
    },
)
def search(body: SearchCreate, services: ServicesDep, tenant: TenantDep) -> SearchPublic:
    """The chunks of the tenant's complete documents that best match ``query``, best first.

    ``model`` may name the configured model, the active one, one built by ``ragstream
    reembed``, or one with vectors here; any other is refused (400) before it is loaded.
    """
    model = None
    if body.model:
        try:
            model = searchable.check(services.settings, services.engine, body.model)
        except searchable.ModelNotServed as exc:
            raise HTTPException(400, exc.message) from None
    embedder = services.embedders.get(model) if body.mode != "keyword" else None
    filters = Filters(
        document_ids=body.document_ids,
        external_ids=body.external_ids,
        sources=body.sources,
        content_types=body.content_types,
        uploaded_after=body.uploaded_after,
        uploaded_before=body.uploaded_before,
        metadata={
            key: value.model_dump() if isinstance(value, MetadataPrefix) else value
            for key, value in (body.metadata or {}).items()
        },
    )
    try:
        page = searching.search(
            services.engine,
            embedder,
            body.query,
            tenant=tenant,
            k=body.k,
            mode=body.mode,
            weights=(body.vector_weight, body.keyword_weight),
            filters=filters,
            cursor=body.cursor,
            named=model is not None,
        )
    except NoVectors as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:  # a bad cursor, all weights 0
        raise HTTPException(400, str(exc)) from None
    return SearchPublic(
        model=embedder.name if embedder is not None else None,
        mode=page.mode,
        next_cursor=page.next_cursor,
        hits=[
            SearchHitPublic(
                score=h.score,
                chunk_id=h.chunk_id,
                document_id=h.document_id,
                chunk_index=h.chunk_index,
                text=h.text,
                pages=list(h.pages),
                heading_path=list(h.heading_path),
                filename=h.filename,
                external_id=h.external_id,
                vector_rank=h.vector_rank,
                keyword_rank=h.keyword_rank,
            )
            for h in page.hits
        ],
    )
