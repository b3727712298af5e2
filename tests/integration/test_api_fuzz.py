"""Schemathesis over the OpenAPI schema against the running API: no answer is a 5xx.

Every operation gets ``EXAMPLES_PER_OPERATION`` generated requests (valid and
invalid), each sent with a valid key and without one: a few hundred requests in
all, well under a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from ragstream.settings import Settings
from tests.integration.test_api_server import KEYS, ApiServer, serve

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 20


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    yield from serve(settings, max_upload_bytes=256 * 1024)


def test_no_operation_answers_5xx(api: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    server_errors: list[str] = []
    sent = 0
    started = time.monotonic()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal sent
            for headers in ({"Authorization": f"Bearer {KEYS['alpha']}"}, None):
                response = case.call(base_url=api.url, headers=headers, timeout=60)
                sent += 1
                if response.status_code >= 500:
                    server_errors.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{response.text[:300]}\n{case.as_curl_command()}"
                    )

        check()
    elapsed = time.monotonic() - started
    print(f"fuzz: {sent} requests over {len(operations)} operations in {elapsed:.1f}s")
    assert not server_errors, "\n\n".join(server_errors[:5])
    assert sent >= len(operations) * 2
