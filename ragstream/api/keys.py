"""API keys and the tenants they stand for.

Keys come from ``API_KEYS`` (``key:tenant,key:tenant``). Without it, the API
and the CLI use the key file ``DATA_DIR/api_keys`` (mode 0600, same format, one
pair a line), which ``ragstream up`` writes with a fresh key for tenant
``default`` and a fresh operator key when there is none.

A key whose tenant is ``*`` is an operator key: it opens the operator views
(``/v1/alerts``, and on ``/dashboard`` every tenant and the stage view), and no
tenant's documents; a tenant's key opens that tenant's documents, search and
dashboard, and not the operator views.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from ragstream.settings import Settings

DEFAULT_TENANT = "default"
OPERATOR = "*"
"""The tenant name of an operator key."""


class InvalidApiKeys(ValueError):
    """``API_KEYS`` or the key file is not ``key:tenant`` pairs."""


def key_file(settings: Settings) -> Path:
    return settings.data_dir / "api_keys"


def parse_keys(text: str) -> dict[str, str]:
    """``key:tenant`` pairs separated by commas or new lines, to {key: tenant}."""
    keys: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.rpartition(":")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key or not tenant:
            raise InvalidApiKeys("API keys are 'key:tenant' pairs separated by commas")
        keys[key] = tenant
    return keys


def load_keys(settings: Settings) -> dict[str, str]:
    """The configured keys: ``API_KEYS`` when set, else the key file, else none."""
    if settings.api_keys is not None:
        return parse_keys(settings.api_keys.get_secret_value())
    path = key_file(settings)
    if path.exists():
        return parse_keys(path.read_text())
    return {}


def is_operator(tenant: str) -> bool:
    return tenant == OPERATOR


def cli_key(keys: dict[str, str], tenant: str = DEFAULT_TENANT) -> tuple[str, str] | None:
    """The key the CLI uses, with its tenant: ``tenant``'s, else ``default``'s, else any
    tenant's, else an operator key; None when there are no keys."""
    ranked = sorted(
        keys.items(),
        key=lambda kv: (kv[1] != tenant, kv[1] != DEFAULT_TENANT, is_operator(kv[1])),
    )
    return ranked[0] if ranked else None


def ensure_key(settings: Settings) -> tuple[str, bool]:
    """A key for the CLI (see :func:`cli_key`); without ``API_KEYS`` and a key file, one
    for tenant ``default`` is generated (and stored 0600).

    Returns the key and whether it was generated now.
    """
    found = cli_key(load_keys(settings), settings.tenant)
    if found is not None:
        return found[0], False
    if settings.api_keys is not None:
        raise InvalidApiKeys("API_KEYS is set but holds no key")
    key = "rs_" + secrets.token_urlsafe(32)
    _write_key_file(settings, f"{key}:{DEFAULT_TENANT}\n")
    return key, True


def ensure_operator_key(settings: Settings) -> str | None:
    """An operator key; without ``API_KEYS``, one is added to the key file when it has none.

    None when ``API_KEYS`` is set and names no operator (``key:*``).
    """
    keys = load_keys(settings)
    for key, tenant in keys.items():
        if is_operator(tenant):
            return key
    if settings.api_keys is not None:
        return None
    key = "rs_op_" + secrets.token_urlsafe(32)
    lines = "".join(f"{k}:{t}\n" for k, t in keys.items())
    _write_key_file(settings, f"{lines}{key}:{OPERATOR}\n")
    return key


def _write_key_file(settings: Settings, text: str) -> None:
    path = key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def tenant_for(keys: dict[str, str], presented: str) -> str | None:
    """The tenant of ``presented``, comparing against every key in constant time."""
    found: str | None = None
    for key, tenant in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = tenant
    return found
