"""``/v1/search``: the query embedded with the active (or the named) model, cosine top-k."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ragstream import search as searching
from ragstream.api import searchable
from ragstream.api.deps import ServicesDep, TenantDep
from ragstream.api.models import ErrorPublic, SearchCreate, SearchHitPublic, SearchPublic
from ragstream.errors import NoVectors

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post(
    "",
    responses={
        400: {"model": ErrorPublic, "description": "A model not searchable here."},
        401: {"model": ErrorPublic},
        404: {"model": ErrorPublic, "description": "The model has no vectors here."},
        503: {"model": ErrorPublic},
    },
)
def search(body: SearchCreate, services: ServicesDep, tenant: TenantDep) -> SearchPublic:
    """The chunks of the tenant's complete documents closest to ``query``, best first.

    ``model`` may name the configured model, the active one, one built by ``ragstream
    reembed``, or one with vectors here; any other is refused (400) before it is loaded.
    """
    model = None
    if body.model:
        try:
            model = searchable.check(services.settings, services.engine, body.model)
        except searchable.ModelNotServed as exc:
            raise HTTPException(400, exc.message) from None
    embedder = services.embedders.get(model)
    try:
        hits = searching.search(
            services.engine,
            embedder,
            body.query,
            tenant=tenant,
            k=body.k,
            document_ids=body.document_ids,
            metadata=body.metadata,
            named=model is not None,
        )
    except NoVectors as exc:
        raise HTTPException(404, str(exc)) from None
    return SearchPublic(
        model=embedder.name,
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
            )
            for h in hits
        ],
    )
