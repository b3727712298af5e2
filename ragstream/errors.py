"""One error policy for the whole pipeline.

Every failure a stage can raise is a :class:`RagstreamError`. The runner asks
:class:`RetryPolicy` (at the end of this module) what an error means, and
nothing else: retryable errors are backed off (never sooner than their
``retry_after_s``) and retried without committing; permanent ones send the
message to the DLQ and mark its document ``failed``; any other exception is
retried a bounded number of times, then dead-lettered too, so one message never
crash-loops a stage. :func:`is_retryable` and :func:`is_permanent` are the
public classifiers. No stage catches and classifies errors by itself.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass


class RagstreamError(Exception):
    """Base class; ``stage`` names where it happened, when known."""

    retryable: bool = False

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage

    @property
    def error_class(self) -> str:
        return type(self).__name__


class PermanentError(RagstreamError):
    """Retrying cannot help: the input itself is wrong."""

    retryable = False


class RetryableError(RagstreamError):
    """A dependency is unavailable or saturated; the same input may succeed later.

    ``retry_after_s``, when set, is how long the dependency asked us to wait
    (a Retry-After header); the retry policy never retries sooner.
    """

    retryable = True
    retry_after_s: float | None = None


class UndecodableEvent(PermanentError):
    """The message is not a valid event of the expected contract."""


class UnsupportedDocument(PermanentError):
    """The document's type is not one we can parse."""


class CorruptDocument(PermanentError):
    """The document claims a type but cannot be read as it (truncated, encrypted, empty...)."""


class ParserLimitExceeded(PermanentError):
    """The parser ran past its wall-clock or memory limit (hostile or pathological input)."""


class MissingBlob(PermanentError):
    """An event refers to a blob that the blob store does not have."""


class UnreadableObject(PermanentError):
    """An event names an object that cannot be read: an unknown scheme, a URL outside the
    allow-list, an absent object or one the store refuses to give us."""


class ObjectTooLarge(PermanentError):
    """The object an event names is larger than ``max_upload_bytes``."""


class ChecksumMismatch(PermanentError):
    """The bytes read are not what the event says they are (another hash or size)."""


class ObjectStoreUnavailable(RetryableError):
    """An object store or web server did not answer, or answered 5xx/429: try again later."""


class EmbedderUnavailable(RetryableError):
    """The embedding backend is down or rate-limiting (HTTP 429/5xx, timeouts)."""


class EmbedderRejected(PermanentError):
    """The embedding backend refused the input for good (HTTP 4xx other than 429)."""


class RetriesExhausted(PermanentError):
    """A "retryable" error that kept coming back for one message while its dependencies answered."""


class InvalidEvent(UndecodableEvent):
    """A valid record of the contract whose values are wrong (an id that is not a UUID)."""


class UnexpectedError(PermanentError):
    """An exception that is not a RagstreamError kept failing one message: dead-lettered."""


class RejectedByDatabase(PermanentError):
    """The database refused a row for good (a data or integrity error, SQLSTATE 22/23)."""


class DependencyUnavailable(RetryableError):
    """The database or the broker cannot be reached right now."""


class IllegalTransition(RagstreamError):
    """A document state change that the state machine does not allow."""


class SchemaNotAtHead(RagstreamError):
    """The database schema is not at the Alembic head; run ``ragstream migrate``."""


class NoVectors(RagstreamError):
    """A search named an embedding model that has no vectors in the database."""


# --- the retry policy ------------------------------------------------------
def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` means a dependency failed, so the same input may pass later."""
    from confluent_kafka import KafkaException
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, RagstreamError):
        return exc.retryable
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, KafkaException | ConnectionError | TimeoutError)


def as_permanent(exc: BaseException) -> PermanentError | None:
    """``exc`` as the permanent error of its input, or None when the input is not at fault."""
    from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

    if isinstance(exc, PermanentError):
        return exc
    if not isinstance(exc, DBAPIError):
        return None
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if isinstance(exc, DataError | IntegrityError) or sqlstate[:2] in ("22", "23"):
        return RejectedByDatabase(f"database refused the row: {exc.orig}")
    return None


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying ``exc`` cannot help: its input is wrong."""
    return as_permanent(exc) is not None


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` is the process's, not a message's: the worker must stop."""
    from confluent_kafka import KafkaException

    if isinstance(exc, MemoryError | SchemaNotAtHead) or not isinstance(exc, Exception):
        return True
    if isinstance(exc, KafkaException) and exc.args:
        fatal = getattr(exc.args[0], "fatal", None)
        return bool(fatal()) if callable(fatal) else False
    return False


class Action(enum.Enum):
    RETRY = "retry"  # the same messages again after ``delay_s``
    SPLIT = "split"  # each message alone, so only the guilty one fails
    DEAD_LETTER = "dead_letter"  # the one message goes to the DLQ with ``error``
    RAISE = "raise"  # not a message's fault: the worker stops, nothing stored


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    error: PermanentError | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """What to do when handling messages raised: the one place that decides.

    A permanent error splits a batch, then dead-letters its one message. Any
    other error (retryable or unexpected) is retried with jittered exponential
    backoff; past ``max_attempts`` it splits and dead-letters too, but only
    while ``dependencies_answer()``: while a dependency is down nothing fails.
    """

    initial_s: float
    max_s: float
    max_attempts: int
    jitter: float = 0.5  # each delay is drawn from [(1 - jitter) * d, d]
    rng: Callable[[], float] = random.random

    def backoff(self, attempt: int, exc: BaseException | None = None) -> float:
        """The wait after failed attempt ``attempt`` (1-based); never below a Retry-After."""
        delay = min(self.initial_s * 2.0 ** min(attempt - 1, 62), self.max_s)
        delay *= 1.0 - self.jitter * self.rng()
        hint = getattr(exc, "retry_after_s", None)
        if isinstance(hint, int | float) and hint > 0:
            delay = max(delay, float(hint))
        return delay

    def decide(
        self,
        exc: BaseException,
        *,
        attempt: int,
        messages: int,
        dependencies_answer: Callable[[], bool] = lambda: True,
    ) -> Decision:
        """After attempt ``attempt`` at ``messages`` messages raised ``exc``."""
        if is_fatal(exc):
            return Decision(Action.RAISE)
        permanent = as_permanent(exc)
        if permanent is None:
            if attempt < self.max_attempts or not dependencies_answer():
                return Decision(Action.RETRY, self.backoff(attempt, exc))
            what = f"{type(exc).__name__}: {str(exc)[:1000]}"
            if is_retryable(exc):
                permanent = RetriesExhausted(
                    f"still failing after {attempt} attempts while the database and the "
                    f"broker answer: {what}"
                )
            else:
                permanent = UnexpectedError(f"failed {attempt} times: {what}")
        if messages > 1:
            return Decision(Action.SPLIT)
        return Decision(Action.DEAD_LETTER, error=permanent)
