"""The retry policy: what an error means (retry, split, dead-letter, raise) and how long to wait."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from ragstream.embedding.base import EndpointUnavailable
from ragstream.errors import (
    Action,
    CorruptDocument,
    DependencyUnavailable,
    EmbedderUnavailable,
    RejectedByDatabase,
    RetriesExhausted,
    RetryPolicy,
    SchemaNotAtHead,
    UnexpectedError,
    is_permanent,
    is_retryable,
)


def _policy(**kw: object) -> RetryPolicy:
    args: dict[str, object] = {"initial_s": 0.5, "max_s": 30.0, "max_attempts": 3, "rng": lambda: 0}
    return RetryPolicy(**{**args, **kw})  # type: ignore[arg-type]


def _never() -> bool:
    raise AssertionError("dependencies probed before the attempts ran out")


@pytest.mark.parametrize(
    "exc",
    [
        DependencyUnavailable("db down"),
        EmbedderUnavailable("429"),
        OperationalError("select 1", {}, Exception("connection refused")),
        KafkaException(KafkaError(KafkaError._TRANSPORT)),
        ConnectionError("reset"),
        TimeoutError("slow"),
    ],
)
def test_dependency_failures_are_retryable_not_permanent(exc: Exception) -> None:
    assert is_retryable(exc)
    assert not is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        CorruptDocument("truncated"),
        IntegrityError("insert", {}, Exception("duplicate")),
        DataError("insert", {}, Exception("NUL byte")),
    ],
)
def test_input_errors_are_permanent_not_retryable(exc: Exception) -> None:
    assert is_permanent(exc)
    assert not is_retryable(exc)


def test_a_bug_is_neither() -> None:
    assert not is_retryable(KeyError("x")) and not is_permanent(KeyError("x"))


def test_backoff_doubles_up_to_its_cap_and_never_overflows() -> None:
    policy = _policy()
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.backoff(10) == 30.0
    assert policy.backoff(100_000) == 30.0


def test_backoff_is_jittered_within_its_bounds() -> None:
    low, high = _policy(rng=lambda: 0.999999), _policy(rng=lambda: 0.0)
    assert high.backoff(3) == 2.0
    assert 1.0 <= low.backoff(3) < 1.0001
    real = RetryPolicy(initial_s=1.0, max_s=30.0, max_attempts=3)
    delays = {real.backoff(4) for _ in range(50)}
    assert len(delays) > 1 and all(4.0 <= d <= 8.0 for d in delays)


def test_a_retry_after_is_honoured() -> None:
    policy = _policy()
    throttled = EndpointUnavailable("429", status_code=429, retry_after_s=12.5)
    assert policy.backoff(1, throttled) == 12.5
    assert policy.backoff(8, EndpointUnavailable("503", retry_after_s=0.1)) == 30.0
    decision = policy.decide(throttled, attempt=1, messages=5)
    assert (decision.action, decision.delay_s) == (Action.RETRY, 12.5)


def test_a_permanent_error_splits_a_batch_then_dead_letters_its_message() -> None:
    policy = _policy()
    bad = CorruptDocument("truncated")
    assert policy.decide(bad, attempt=1, messages=4, dependencies_answer=_never).action is (
        Action.SPLIT
    )
    one = policy.decide(bad, attempt=1, messages=1, dependencies_answer=_never)
    assert (one.action, one.error) == (Action.DEAD_LETTER, bad)
    refused = policy.decide(IntegrityError("i", {}, Exception("dup")), attempt=1, messages=1)
    assert refused.action is Action.DEAD_LETTER and isinstance(refused.error, RejectedByDatabase)


def test_a_retryable_error_is_retried_then_dead_lettered_while_dependencies_answer() -> None:
    policy = _policy()
    exc = DependencyUnavailable("reset")
    first = policy.decide(exc, attempt=1, messages=3, dependencies_answer=_never)
    assert (first.action, first.delay_s) == (Action.RETRY, 0.5)
    assert policy.decide(exc, attempt=3, messages=3).action is Action.SPLIT
    last = policy.decide(exc, attempt=3, messages=1)
    assert last.action is Action.DEAD_LETTER
    assert isinstance(last.error, RetriesExhausted) and "DependencyUnavailable" in str(last.error)


def test_while_a_dependency_is_down_nothing_is_ever_dead_lettered() -> None:
    policy = _policy()
    for attempt in (3, 50, 10_000):
        decision = policy.decide(
            DependencyUnavailable("db down"),
            attempt=attempt,
            messages=1,
            dependencies_answer=lambda: False,
        )
        assert (decision.action, decision.delay_s) == (Action.RETRY, policy.backoff(attempt))
    assert policy.backoff(50) == 30.0


def test_a_bug_is_retried_a_bounded_number_of_times_then_dead_lettered() -> None:
    policy = _policy()
    assert policy.decide(KeyError("k"), attempt=2, messages=1).action is Action.RETRY
    last = policy.decide(KeyError("k"), attempt=3, messages=1)
    assert last.action is Action.DEAD_LETTER
    assert isinstance(last.error, UnexpectedError) and "KeyError" in str(last.error)


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        SchemaNotAtHead("migrate"),
        KafkaException(KafkaError(KafkaError._FATAL, fatal=True)),
    ],
)
def test_errors_of_the_process_are_raised(exc: BaseException) -> None:
    assert _policy().decide(exc, attempt=1, messages=1).action is Action.RAISE
