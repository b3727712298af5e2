from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from ragstream.errors import IllegalTransition
from ragstream.state import (
    HAPPY_PATH,
    REPROCESS_RESETS_TO,
    STATUS_TIMESTAMP_FIELD,
    TRANSITIONS,
    DocumentStatus,
    EdgeKind,
    check_monotonic,
    edge_kind,
    fields_to_clear_on_reset,
    is_stale,
    is_terminal,
    path_to,
    reprocess,
    transition,
)

S = DocumentStatus
NON_TERMINAL = [s for s in S if s not in (S.COMPLETE, S.FAILED)]


def illegal_count(src: str, dst: str) -> float:
    value = REGISTRY.get_sample_value(
        "ragstream_illegal_transitions_total", {"from": src, "to": dst}
    )
    return value or 0.0


def test_status_values() -> None:
    assert [s.value for s in S] == [
        "uploaded",
        "parsing",
        "parsed",
        "chunking",
        "chunked",
        "embedding",
        "complete",
        "failed",
    ]
    assert S("parsed") is S.PARSED
    assert isinstance(S.PARSED, str)
    assert f"{S.PARSED}" == "parsed"


@pytest.mark.parametrize(("src", "dst"), list(pairwise(HAPPY_PATH)))
def test_happy_path_edges(src: DocumentStatus, dst: DocumentStatus) -> None:
    assert transition(src, dst) is dst
    assert edge_kind(src, dst) is EdgeKind.ADVANCE


@pytest.mark.parametrize("src", NON_TERMINAL)
def test_any_non_terminal_status_may_fail(src: DocumentStatus) -> None:
    assert transition(src, S.FAILED) is S.FAILED
    assert edge_kind(src, S.FAILED) is EdgeKind.FAIL


@pytest.mark.parametrize("status", list(S))
def test_redelivery_of_the_same_status_is_a_no_op(status: DocumentStatus) -> None:
    assert transition(status, status) is status
    assert edge_kind(status, status) is EdgeKind.REDELIVERY


@pytest.mark.parametrize(("src", "dst"), sorted(TRANSITIONS))
def test_every_table_edge_is_legal_with_the_right_flag(
    src: DocumentStatus, dst: DocumentStatus
) -> None:
    needs_reprocess = TRANSITIONS[(src, dst)] is EdgeKind.REPROCESS
    assert transition(src, dst, reprocess=needs_reprocess) is dst


def test_table_shape() -> None:
    kinds = list(TRANSITIONS.values())
    assert kinds.count(EdgeKind.ADVANCE) == 6
    assert kinds.count(EdgeKind.FAIL) == 6
    assert kinds.count(EdgeKind.REDELIVERY) == 8
    assert kinds.count(EdgeKind.REPROCESS) == 6
    for (src, _dst), kind in TRANSITIONS.items():
        if kind is EdgeKind.REPROCESS:
            assert is_terminal(src)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.COMPLETE, S.PARSING),
        (S.UPLOADED, S.COMPLETE),
        (S.FAILED, S.PARSED),  # a reprocess edge, but not requested as one
        (S.COMPLETE, S.UPLOADED),
        (S.PARSED, S.UPLOADED),
        (S.UPLOADED, S.PARSED),
        (S.CHUNKING, S.EMBEDDING),
        (S.COMPLETE, S.FAILED),
        (S.FAILED, S.COMPLETE),
        (S.EMBEDDING, S.CHUNKING),
    ],
)
def test_illegal_edges_raise_count_and_log(src: DocumentStatus, dst: DocumentStatus) -> None:
    before = illegal_count(src.value, dst.value)
    with capture_logs() as logs, pytest.raises(IllegalTransition) as info:
        transition(src, dst)
    message = str(info.value)
    assert src.value in message
    assert dst.value in message
    assert illegal_count(src.value, dst.value) == before + 1
    assert logs == [
        {
            "event": "illegal_transition",
            "log_level": "warning",
            "from_status": src.value,
            "to_status": dst.value,
            "why": logs[0]["why"],
        }
    ]


def test_illegal_transition_is_not_retryable() -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(S.UPLOADED, S.COMPLETE)
    assert info.value.retryable is False


def test_reprocess_resets_to_the_status_before_the_stage() -> None:
    assert dict(REPROCESS_RESETS_TO) == {
        "parse": S.UPLOADED,
        "chunk": S.PARSED,
        "embed": S.CHUNKED,
    }
    for terminal in (S.COMPLETE, S.FAILED):
        assert reprocess(terminal, "parse") is S.UPLOADED
        assert reprocess(terminal, "chunk") is S.PARSED
        assert reprocess(terminal, "embed") is S.CHUNKED
        assert transition(terminal, S.PARSED, reprocess=True) is S.PARSED


def test_reprocess_only_from_terminal_statuses() -> None:
    before = illegal_count("parsing", "uploaded")
    with pytest.raises(IllegalTransition, match="parsing -> uploaded"):
        reprocess(S.PARSING, "parse")
    assert illegal_count("parsing", "uploaded") == before + 1
    with pytest.raises(IllegalTransition):
        transition(S.UPLOADED, S.PARSING, reprocess=True)
    with pytest.raises(ValueError, match="unknown stage"):
        reprocess(S.COMPLETE, "index")  # type: ignore[arg-type]


def test_plain_strings_are_accepted() -> None:
    assert transition("uploaded", "parsing") is S.PARSING
    with pytest.raises(ValueError):
        transition("uploaded", "bogus")


def test_is_terminal() -> None:
    assert {s for s in S if is_terminal(s)} == {S.COMPLETE, S.FAILED}


def test_path_to_walks_forward_edges_only() -> None:
    assert path_to(S.CHUNKING, S.EMBEDDING) == (S.CHUNKED, S.EMBEDDING)
    assert path_to(S.UPLOADED, S.COMPLETE) == HAPPY_PATH[1:]
    assert path_to(S.PARSED, S.PARSED) == ()
    assert path_to(S.CHUNKING, S.FAILED) == (S.FAILED,)
    steps = path_to(S.UPLOADED, S.CHUNKED)
    current = S.UPLOADED
    for step in steps:  # every step is a legal single transition
        current = transition(current, step)
    assert current is S.CHUNKED


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.EMBEDDING, S.CHUNKED),
        (S.COMPLETE, S.PARSING),
        (S.FAILED, S.COMPLETE),
        (S.COMPLETE, S.FAILED),
    ],
)
def test_path_to_refuses_backward_and_terminal_moves(
    src: DocumentStatus, dst: DocumentStatus
) -> None:
    before = illegal_count(src.value, dst.value)
    with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
        path_to(src, dst)
    assert illegal_count(src.value, dst.value) == before + 1


def test_is_stale() -> None:
    assert is_stale(S.EMBEDDING, S.CHUNKED)
    assert is_stale(S.COMPLETE, S.UPLOADED)
    assert not is_stale(S.CHUNKED, S.CHUNKED)
    assert not is_stale(S.CHUNKING, S.EMBEDDING)
    assert not is_stale(S.FAILED, S.PARSED)
    assert not is_stale(S.PARSED, S.FAILED)


def test_timestamp_fields() -> None:
    assert dict(STATUS_TIMESTAMP_FIELD) == {
        S.UPLOADED: "uploaded_at",
        S.PARSING: "parsing_started_at",
        S.PARSED: "parsed_at",
        S.CHUNKING: "chunking_started_at",
        S.CHUNKED: "chunked_at",
        S.EMBEDDING: "embedding_started_at",
        S.COMPLETE: "completed_at",
        S.FAILED: "failed_at",
    }


def test_fields_to_clear_on_reset() -> None:
    assert fields_to_clear_on_reset(S.PARSED) == (
        "chunking_started_at",
        "chunked_at",
        "embedding_started_at",
        "completed_at",
        "failed_at",
    )
    assert fields_to_clear_on_reset(S.CHUNKED)[0] == "embedding_started_at"
    with pytest.raises(ValueError):
        fields_to_clear_on_reset(S.FAILED)


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def walk(*offsets_s: float) -> dict[str, datetime]:
    return {
        STATUS_TIMESTAMP_FIELD[status]: T0 + timedelta(seconds=s)
        for status, s in zip(HAPPY_PATH, offsets_s, strict=False)
    }


def test_monotonic_accepts_ordered_partial_and_equal_times() -> None:
    check_monotonic(walk(0, 1, 2, 3, 4, 5, 6))
    check_monotonic(walk(0, 1, 1, 1))  # equal millisecond stamps
    check_monotonic({"uploaded_at": T0, "parsed_at": None, "chunked_at": T0, "other": 1})  # type: ignore[dict-item]
    check_monotonic({})
    check_monotonic({**walk(0, 1, 2), "failed_at": T0 + timedelta(seconds=1)})


def test_monotonic_rejects_out_of_order_times() -> None:
    with pytest.raises(ValueError, match=r"parsed_at .* is before parsing_started_at"):
        check_monotonic(walk(0, 2, 1))
    # a gap (missing field) is compared with the latest earlier time present
    with pytest.raises(ValueError, match=r"completed_at .* is before chunked_at"):
        check_monotonic(
            {"uploaded_at": T0, "chunked_at": T0 + timedelta(seconds=5), "completed_at": T0}
        )
    with pytest.raises(ValueError, match="failed_at"):
        check_monotonic({"uploaded_at": T0, "failed_at": T0 - timedelta(milliseconds=1)})


def test_monotonic_reports_every_violation() -> None:
    with pytest.raises(ValueError) as info:
        check_monotonic(walk(0, 5, 1, 6, 2))
    message = str(info.value)
    assert "parsed_at" in message
    assert "chunked_at" in message


def test_monotonic_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        check_monotonic({"uploaded_at": datetime(2024, 5, 1, 12, 0)})
