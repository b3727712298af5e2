"""Fixtures of the chaos suite: the native devstack, whose broker and database it stops."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack


@pytest.fixture
def devstack(stack: Stack) -> Any:
    """The Kafka and PostgreSQL this session started, to stop, kill and restart."""
    if stack.devstack is None:
        pytest.fail(
            f"this chaos test stops and restarts Kafka and PostgreSQL, so it needs the native "
            f"devstack; the services here come from {stack.kind} (unset "
            "RAGSTREAM_KAFKA_BOOTSTRAP and RAGSTREAM_DATABASE_URL)"
        )
    return stack.devstack
