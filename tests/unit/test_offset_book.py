"""The offset book: nothing is stored past a message begun and not finished."""

from __future__ import annotations

from ragstream.consumers.offsets import OffsetBook


def test_a_finished_batch_stores_the_offset_after_its_last_message() -> None:
    book = OffsetBook()
    book.begin([("t", 0, 5), ("t", 0, 6), ("t", 1, 9)])
    book.finish([("t", 0, 5), ("t", 0, 6), ("t", 1, 9)])
    assert book.take() == {("t", 0): 7, ("t", 1): 10}
    assert book.take() == {}  # released: nothing twice
    assert book.unfinished() == {}


def test_an_unfinished_message_holds_back_what_finished_behind_it() -> None:
    """Issue 14.1: m5 abandoned on a stop, m6 done: offset 7 must never be stored."""
    book = OffsetBook()
    book.begin([("t", 0, 4), ("t", 0, 5), ("t", 0, 6)])
    book.finish([("t", 0, 4)])
    assert book.take() == {("t", 0): 5}
    book.finish([("t", 0, 6)])
    assert book.take() == {}
    assert book.unfinished() == {("t", 0): 5}
    book.finish([("t", 0, 5)])  # finished after all (retried): the run is whole
    assert book.take() == {("t", 0): 7}


def test_partitions_are_independent_and_gaps_in_offsets_do_not_matter() -> None:
    book = OffsetBook()
    book.begin([("t", 0, 10), ("t", 0, 13), ("t", 1, 2), ("t", 1, 3)])
    book.finish([("t", 0, 10), ("t", 0, 13), ("t", 1, 3)])
    assert book.take() == {("t", 0): 14}
    assert book.unfinished() == {("t", 1): 2}


def test_forgotten_partitions_store_nothing_and_late_finishes_are_ignored() -> None:
    book = OffsetBook()
    book.begin([("t", 0, 1), ("t", 1, 1)])
    book.forget([("t", 0)])
    book.finish([("t", 0, 1), ("t", 1, 1)])
    assert book.take() == {("t", 1): 2}


def test_beginning_again_keeps_what_was_finished() -> None:
    book = OffsetBook()
    book.begin([("t", 0, 1), ("t", 0, 2)])
    book.finish([("t", 0, 2)])
    book.begin([("t", 0, 2), ("t", 0, 3)])
    book.finish([("t", 0, 1)])
    assert book.take() == {("t", 0): 3}
    assert book.unfinished() == {("t", 0): 3}
