"""Dependencies of the routes, as ``Annotated`` aliases: ``services: ServicesDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from ragstream.api.keys import is_operator, tenant_for
from ragstream.api.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key; it names the caller's tenant.")
_basic = HTTPBasic(
    auto_error=False,
    realm="ragstream operator",
    description="For a browser: any user name, an operator key as the password.",
)
# Basic alone: a browser then asks for the key; a client may still send it as a Bearer token.
OPERATOR_CHALLENGE = 'Basic realm="ragstream operator", charset="UTF-8"'


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_tenant(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's tenant, from its bearer key; 401 without a valid one, 403 for an
    operator key (it opens the operator views, no tenant's documents)."""
    tenant = tenant_for(services.keys, credentials.credentials) if credentials else None
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if is_operator(tenant):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "an operator key opens the operator views only; use a tenant's key here",
        )
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]


def _presented_tenant(
    services: ServicesDep,
    bearer: HTTPAuthorizationCredentials | None,
    basic: HTTPBasicCredentials | None,
) -> str | None:
    """The tenant of the key presented as a bearer token or as HTTP Basic's password."""
    presented = bearer.credentials if bearer else basic.password if basic else None
    return tenant_for(services.keys, presented) if presented else None


def require_operator(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> None:
    """An operator key (tenant ``*``), as a bearer token or as the password of HTTP Basic
    (what a browser sends for ``/dashboard``); 401 without a valid key, 403 for a tenant's."""
    tenant = _presented_tenant(services, bearer, basic)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key; the operator views need an operator key",
            headers={"WWW-Authenticate": OPERATOR_CHALLENGE},
        )
    if not is_operator(tenant):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the operator views need an operator key (tenant '*'), not a tenant's key",
        )


OperatorDep = Depends(require_operator)

DASHBOARD_CHALLENGE = 'Basic realm="ragstream dashboard", charset="UTF-8"'


def get_viewer(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> str:
    """Who looks at the dashboard: a tenant's name, or ``*`` for an operator key; the key
    as a bearer token or as the password of HTTP Basic (a browser's); 401 without one."""
    tenant = _presented_tenant(services, bearer, basic)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key; the dashboard needs a tenant's or an operator key",
            headers={"WWW-Authenticate": DASHBOARD_CHALLENGE},
        )
    return tenant


ViewerDep = Annotated[str, Depends(get_viewer)]
