"""API keys and the tenants they stand for.

Keys come from ``API_KEYS`` (``key:tenant,key:tenant``). Without it, the API
and the CLI use the key file ``DATA_DIR/api_keys`` (mode 0600, same format, one
pair a line), which ``ragstream up`` writes with a fresh key for tenant
``default`` when there is none.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from ragstream.settings import Settings

DEFAULT_TENANT = "default"


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


def ensure_key(settings: Settings) -> tuple[str, bool]:
    """A key of tenant ``default`` for the CLI; generated (and stored 0600) when none exists.

    Returns the key and whether it was generated now.
    """
    for key, tenant in load_keys(settings).items():
        if tenant == DEFAULT_TENANT:
            return key, False
    if settings.api_keys is not None:
        raise InvalidApiKeys("API_KEYS is set but has no key for tenant 'default'")
    key = "rs_" + secrets.token_urlsafe(32)
    path = key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{key}:{DEFAULT_TENANT}\n")
    os.chmod(path, 0o600)
    return key, True


def tenant_for(keys: dict[str, str], presented: str) -> str | None:
    """The tenant of ``presented``, comparing against every key in constant time."""
    found: str | None = None
    for key, tenant in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = tenant
    return found
