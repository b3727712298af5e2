"""``ragstream up`` with the user's own API keys (issue 14, item 11), against the real services.

The supervisor it would start in the background is replaced by a stub: the
test is about what ``up`` checks and prints before, with the real database
migrated and the real topics created.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from ragstream import supervisor
from ragstream.api.keys import ensure_key, load_keys
from ragstream.cli import app
from ragstream.settings import Settings
from tests.pipeline import settings_env

pytestmark = pytest.mark.integration


def _up(settings: Settings, monkeypatch: pytest.MonkeyPatch, api_keys: str | None) -> Any:
    started: list[tuple[Any, ...]] = []

    def start_background(*args: Any, **kwargs: Any) -> int:
        started.append(args)
        return 4242

    monkeypatch.setattr(supervisor, "start_background", start_background)
    env = settings_env(settings)
    env.pop("RAGSTREAM_API_KEYS", None)
    if api_keys is not None:
        env["RAGSTREAM_API_KEYS"] = api_keys
    for name, value in env.items():  # `up` writes some of these into os.environ: restore them
        monkeypatch.setenv(name, value)
    if api_keys is None:
        monkeypatch.delenv("RAGSTREAM_API_KEYS", raising=False)
    result = CliRunner().invoke(app, ["up", "--embedder", "hash"], env=env)
    return result, started


def test_up_starts_with_own_tenants_and_no_default(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, started = _up(settings, monkeypatch, "key-acme-0123456789:acme,key-op-0123456789:*")
    assert result.exit_code == 0, result.output
    assert started, "the supervisor was not started"
    assert "key-acme-0123456789" in result.output and "(tenant acme)" in result.output
    assert "key-op-0123456789" in result.output  # the operator key opens the dashboard
    assert not (settings.data_dir / "api_keys").exists()  # API_KEYS is the user's: no file


def test_up_with_only_an_operator_key_prints_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _ = _up(settings, monkeypatch, "key-op-0123456789:*")
    assert result.exit_code == 0, result.output
    assert "key-op-0123456789" in result.output and "(tenant *)" in result.output


def test_up_without_keys_makes_a_tenant_key_and_an_operator_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragstream.api.keys import ensure_operator_key

    result, _ = _up(settings, monkeypatch, None)
    assert result.exit_code == 0, result.output
    keys = load_keys(settings)
    assert sorted(keys.values()) == ["*", "default"]
    for key in keys:
        assert key in result.output
    # Found again, not made twice.
    assert ensure_key(settings)[1] is False
    assert ensure_operator_key(settings) in keys
    assert len(load_keys(settings)) == 2
