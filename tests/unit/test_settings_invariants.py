"""Settings are frozen, and refuse at start what librdkafka or the backoff cannot work with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragstream.settings import Settings


def test_settings_are_frozen_and_copies_carry_changes() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 9  # type: ignore[misc]
    copy = settings.model_copy(update={"partitions": settings.partitions + 1})
    assert copy.partitions == settings.partitions + 1


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"session_timeout_s": 60, "max_poll_interval_s": 30}, "RAGSTREAM_MAX_POLL_INTERVAL_S"),
        ({"retry_backoff_initial_s": 5.0, "retry_backoff_max_s": 1.0}, "retry_backoff_max_s=1.0"),
        ({"chunk_overlap_tokens": 300, "chunk_target_tokens": 200}, "chunk_target_tokens=200"),
    ],
)
def test_impossible_relations_are_refused_with_the_fix(fields: dict[str, float], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(**fields)  # type: ignore[arg-type]


def test_the_environment_is_checked_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSTREAM_SESSION_TIMEOUT_S", "45")
    monkeypatch.setenv("RAGSTREAM_MAX_POLL_INTERVAL_S", "10")
    with pytest.raises(ValidationError, match="session_timeout_s=45"):
        Settings()
    monkeypatch.setenv("RAGSTREAM_MAX_POLL_INTERVAL_S", "300")
    assert Settings().session_timeout_s == 45
