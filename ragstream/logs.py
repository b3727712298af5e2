"""Structured logs: JSON lines for machines, readable lines in a terminal."""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import structlog
from opentelemetry import trace


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    # Libraries' stdlib logging (faust, aiokafka, alembic) comes out in the same format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def _add_trace_ids(
    logger: Any, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Lines written inside a span name its trace, so logs and traces join up."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


def message_fields(
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    document_id: uuid.UUID | str | None = None,
    job_id: uuid.UUID | str | None = None,
) -> dict[str, Any]:
    """The fields every log line about one Kafka message carries, under these names."""
    return {
        "stage": stage,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "document_id": str(document_id) if document_id else None,
        "job_id": str(job_id) if job_id else None,
    }
