"""Where a document is in the pipeline, and which status changes are legal.

Every legal change is one entry of :data:`TRANSITIONS`, labelled with why it
exists:

* ``advance``: one step along the happy path
  uploaded -> parsing -> parsed -> chunking -> chunked -> embedding -> complete;
* ``fail``: any non-terminal status may become ``failed``;
* ``redelivery``: Kafka delivers at least once, so a stage may re-apply the status
  a document already has. That is a no-op, not an error;
* ``reprocess``: ``complete`` and ``failed`` are terminal; the only way out is an
  explicit reprocess (``transition(..., reprocess=True)`` or :func:`reprocess`).
  Reprocessing from a stage resets the document to the status *before* that stage
  (parse -> ``uploaded``, chunk -> ``parsed``, embed -> ``chunked``), so the stage
  runs again from its input, which is still stored.

Anything else raises :class:`~ragstream.errors.IllegalTransition`, counts in
``ragstream_illegal_transitions_total{from,to}`` and is logged.

Stages overlap: chunks are embedded while the chunker is still cutting, so the
embed stage may see a document still ``chunking``. The machine stays strict;
:func:`path_to` gives the legal steps to catch up (each with its timestamp), and
:func:`is_stale` recognises an event that arrives after the document moved past it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

import structlog
from prometheus_client import Counter

from ragstream.errors import IllegalTransition

log = structlog.get_logger(__name__)


class DocumentStatus(StrEnum):
    UPLOADED = "uploaded"
    PARSING = "parsing"
    PARSED = "parsed"
    CHUNKING = "chunking"
    CHUNKED = "chunked"
    EMBEDDING = "embedding"
    COMPLETE = "complete"
    FAILED = "failed"


class EdgeKind(StrEnum):
    ADVANCE = "advance"
    FAIL = "fail"
    REDELIVERY = "redelivery"
    REPROCESS = "reprocess"


_S = DocumentStatus
Stage = Literal["parse", "chunk", "embed"]

HAPPY_PATH: tuple[DocumentStatus, ...] = (
    _S.UPLOADED,
    _S.PARSING,
    _S.PARSED,
    _S.CHUNKING,
    _S.CHUNKED,
    _S.EMBEDDING,
    _S.COMPLETE,
)

TERMINAL: frozenset[DocumentStatus] = frozenset({_S.COMPLETE, _S.FAILED})

REPROCESS_RESETS_TO: Mapping[Stage, DocumentStatus] = MappingProxyType(
    {"parse": _S.UPLOADED, "chunk": _S.PARSED, "embed": _S.CHUNKED}
)
"""Reprocessing from a stage puts the document back to the status before that stage."""

TRANSITIONS: Mapping[tuple[DocumentStatus, DocumentStatus], EdgeKind] = MappingProxyType(
    {
        # the happy path
        (_S.UPLOADED, _S.PARSING): EdgeKind.ADVANCE,
        (_S.PARSING, _S.PARSED): EdgeKind.ADVANCE,
        (_S.PARSED, _S.CHUNKING): EdgeKind.ADVANCE,
        (_S.CHUNKING, _S.CHUNKED): EdgeKind.ADVANCE,
        (_S.CHUNKED, _S.EMBEDDING): EdgeKind.ADVANCE,
        (_S.EMBEDDING, _S.COMPLETE): EdgeKind.ADVANCE,
        # any non-terminal status may fail
        (_S.UPLOADED, _S.FAILED): EdgeKind.FAIL,
        (_S.PARSING, _S.FAILED): EdgeKind.FAIL,
        (_S.PARSED, _S.FAILED): EdgeKind.FAIL,
        (_S.CHUNKING, _S.FAILED): EdgeKind.FAIL,
        (_S.CHUNKED, _S.FAILED): EdgeKind.FAIL,
        (_S.EMBEDDING, _S.FAILED): EdgeKind.FAIL,
        # a redelivered message re-applies the status the document already has
        (_S.UPLOADED, _S.UPLOADED): EdgeKind.REDELIVERY,
        (_S.PARSING, _S.PARSING): EdgeKind.REDELIVERY,
        (_S.PARSED, _S.PARSED): EdgeKind.REDELIVERY,
        (_S.CHUNKING, _S.CHUNKING): EdgeKind.REDELIVERY,
        (_S.CHUNKED, _S.CHUNKED): EdgeKind.REDELIVERY,
        (_S.EMBEDDING, _S.EMBEDDING): EdgeKind.REDELIVERY,
        (_S.COMPLETE, _S.COMPLETE): EdgeKind.REDELIVERY,
        (_S.FAILED, _S.FAILED): EdgeKind.REDELIVERY,
        # leaving a terminal status: explicit reprocess only (see REPROCESS_RESETS_TO)
        (_S.COMPLETE, _S.UPLOADED): EdgeKind.REPROCESS,
        (_S.COMPLETE, _S.PARSED): EdgeKind.REPROCESS,
        (_S.COMPLETE, _S.CHUNKED): EdgeKind.REPROCESS,
        (_S.FAILED, _S.UPLOADED): EdgeKind.REPROCESS,
        (_S.FAILED, _S.PARSED): EdgeKind.REPROCESS,
        (_S.FAILED, _S.CHUNKED): EdgeKind.REPROCESS,
    }
)

STATUS_TIMESTAMP_FIELD: Mapping[DocumentStatus, str] = MappingProxyType(
    {
        _S.UPLOADED: "uploaded_at",
        _S.PARSING: "parsing_started_at",
        _S.PARSED: "parsed_at",
        _S.CHUNKING: "chunking_started_at",
        _S.CHUNKED: "chunked_at",
        _S.EMBEDDING: "embedding_started_at",
        _S.COMPLETE: "completed_at",
        _S.FAILED: "failed_at",
    }
)
"""The column stamped when a document enters each status."""

ILLEGAL_TRANSITIONS = Counter(
    "ragstream_illegal_transitions_total",
    "Document status changes refused by the state machine.",
    ("from", "to"),
)


def is_terminal(status: DocumentStatus | str) -> bool:
    return DocumentStatus(status) in TERMINAL


def edge_kind(current: DocumentStatus | str, target: DocumentStatus | str) -> EdgeKind | None:
    """Why ``current -> target`` is in the table, or None if it is not."""
    return TRANSITIONS.get((DocumentStatus(current), DocumentStatus(target)))


def _refuse(current: DocumentStatus, target: DocumentStatus, why: str) -> IllegalTransition:
    ILLEGAL_TRANSITIONS.labels(current.value, target.value).inc()
    log.warning("illegal_transition", from_status=current.value, to_status=target.value, why=why)
    return IllegalTransition(f"illegal document transition {current} -> {target}: {why}")


def transition(
    current: DocumentStatus | str,
    target: DocumentStatus | str,
    *,
    reprocess: bool = False,
) -> DocumentStatus:
    """Check one status change and return the new status.

    ``current == target`` is a legal no-op (redelivery). Leaving ``complete`` or
    ``failed`` needs ``reprocess=True``, and ``reprocess=True`` is only for that.
    """
    cur, tgt = DocumentStatus(current), DocumentStatus(target)
    kind = TRANSITIONS.get((cur, tgt))
    if kind is None:
        raise _refuse(cur, tgt, "not an edge of the document state machine")
    if kind is EdgeKind.REPROCESS and not reprocess:
        raise _refuse(cur, tgt, f"{cur} is terminal; leaving it needs an explicit reprocess")
    if reprocess and kind is not EdgeKind.REPROCESS:
        raise _refuse(cur, tgt, "reprocess only resets a complete or failed document")
    return tgt


def reprocess(current: DocumentStatus | str, stage: Stage) -> DocumentStatus:
    """The status a terminal document is reset to so that ``stage`` runs again."""
    try:
        target = REPROCESS_RESETS_TO[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; one of {sorted(REPROCESS_RESETS_TO)}") from None
    return transition(current, target, reprocess=True)


def path_to(
    current: DocumentStatus | str, target: DocumentStatus | str
) -> tuple[DocumentStatus, ...]:
    """The legal steps from ``current`` to ``target``, ``target`` last; empty if equal.

    Only forward moves (the happy path, or to ``failed``) are walked, so an
    overlapping stage can catch a document up without the machine allowing jumps.
    """
    cur, tgt = DocumentStatus(current), DocumentStatus(target)
    if cur == tgt:
        return ()
    if tgt is _S.FAILED and cur not in TERMINAL:
        return (tgt,)
    if cur in HAPPY_PATH and tgt in HAPPY_PATH:
        i, j = HAPPY_PATH.index(cur), HAPPY_PATH.index(tgt)
        if i < j:
            return HAPPY_PATH[i + 1 : j + 1]
    raise _refuse(cur, tgt, "no forward path")


def is_stale(current: DocumentStatus | str, observed: DocumentStatus | str) -> bool:
    """True if ``observed`` is a happy-path status the document has already passed.

    Such an event arrived late (redelivered or overtaken by a faster stage); it
    changes nothing and is not an illegal transition.
    """
    cur, obs = DocumentStatus(current), DocumentStatus(observed)
    if cur in HAPPY_PATH and obs in HAPPY_PATH:
        return HAPPY_PATH.index(obs) < HAPPY_PATH.index(cur)
    return False


def fields_to_clear_on_reset(status: DocumentStatus | str) -> tuple[str, ...]:
    """Timestamp columns to null when a reprocess resets a document to ``status``.

    Keeping them would leave times from the earlier run after the new ones.
    """
    st = DocumentStatus(status)
    if st not in HAPPY_PATH:
        raise ValueError(f"a document is never reset to {st}")
    later = HAPPY_PATH[HAPPY_PATH.index(st) + 1 :]
    return (*(STATUS_TIMESTAMP_FIELD[s] for s in later), STATUS_TIMESTAMP_FIELD[_S.FAILED])


def check_monotonic(timestamps: Mapping[str, datetime | None]) -> None:
    """Raise ValueError unless the status timestamps present follow the happy path.

    Missing or None fields are skipped; equal times pass (millisecond clocks).
    ``failed_at`` may follow any stage, so it is only required not to precede
    ``uploaded_at``. Other keys in the mapping are ignored, so a whole row may be
    passed.
    """
    problems: list[str] = []
    latest_field: str | None = None
    latest: datetime | None = None
    for status in HAPPY_PATH:
        name = STATUS_TIMESTAMP_FIELD[status]
        value = timestamps.get(name)
        if value is None:
            continue
        _require_aware(name, value)
        if latest is not None and value < latest:
            problems.append(
                f"{name} ({value.isoformat()}) is before {latest_field} ({latest.isoformat()})"
            )
        else:
            latest_field, latest = name, value
    failed_at = timestamps.get("failed_at")
    uploaded_at = timestamps.get("uploaded_at")
    if failed_at is not None:
        _require_aware("failed_at", failed_at)
        if uploaded_at is not None and failed_at < uploaded_at:
            problems.append(
                f"failed_at ({failed_at.isoformat()}) is before uploaded_at "
                f"({uploaded_at.isoformat()})"
            )
    if problems:
        raise ValueError("document timestamps out of order: " + "; ".join(problems))


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} is a naive datetime; status times are timezone-aware UTC")
