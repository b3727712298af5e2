"""Dependencies of the routes, as ``Annotated`` aliases: ``services: ServicesDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ragstream.api.keys import tenant_for
from ragstream.api.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key; it names the caller's tenant.")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_tenant(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's tenant, from its bearer key; 401 without a valid one."""
    tenant = tenant_for(services.keys, credentials.credentials) if credentials else None
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
