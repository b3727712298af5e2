"""One error policy for the whole pipeline.

Every failure a stage can raise is a :class:`RagstreamError`. The runner looks
only at :attr:`RagstreamError.retryable`: retryable errors are backed off and
retried without committing; permanent ones send the message to the DLQ and mark
its document ``failed``. No stage catches and classifies errors by itself.
"""

from __future__ import annotations


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
    """A dependency is unavailable or saturated; the same input may succeed later."""

    retryable = True


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


class EmbedderUnavailable(RetryableError):
    """The embedding backend is down or rate-limiting (HTTP 429/5xx, timeouts)."""


class EmbedderRejected(PermanentError):
    """The embedding backend refused the input for good (HTTP 4xx other than 429)."""


class RetriesExhausted(PermanentError):
    """A "retryable" error that kept coming back for one message while its dependencies answered."""


class RejectedByDatabase(PermanentError):
    """The database refused a row for good (a data or integrity error, SQLSTATE 22/23)."""


class DependencyUnavailable(RetryableError):
    """The database or the broker cannot be reached right now."""


class IllegalTransition(RagstreamError):
    """A document state change that the state machine does not allow."""


class SchemaNotAtHead(RagstreamError):
    """The database schema is not at the Alembic head; run ``ragstream migrate``."""
