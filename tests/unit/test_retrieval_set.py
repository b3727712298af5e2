"""The retrieval set and its scores: deterministic queries, and arithmetic that can be checked."""

from __future__ import annotations

import numpy as np

from ragstream.benchmark import corpus, limits, retrieval
from ragstream.benchmark.retrieval import FACTS, Query, make_queries, reorder, score
from ragstream.settings import Settings


def _haystack() -> list[str]:
    prepared = limits.prepare(Settings(embedder="hash"), corpus.make_corpus(4, max_doc_mb=0.03))
    return [*prepared.texts, *retrieval.fact_texts()]


def test_queries_are_deterministic_and_answered_by_the_chunks_that_hold_them() -> None:
    texts = _haystack()
    queries = make_queries(texts, per_kind=20)
    assert queries == make_queries(texts, per_kind=20)
    kinds = [q.kind for q in queries]
    assert kinds.count("known_item") == kinds.count("reordered") == 20
    assert kinds.count("question") == 20  # one per fact, up to per_kind
    for q in queries:
        assert q.answers, q
        if q.kind == "known_item":
            assert all(q.text in texts[i] for i in q.answers)
        if q.kind == "question":
            (answer,) = q.answers
            assert texts[answer] in {fact for fact, _, _ in FACTS}


def test_reorder_drops_every_fourth_word_and_swaps_two() -> None:
    assert reorder("a b c d e f g h") == "a b e c f g"
    assert reorder("one two") == "one two"


def test_scores_follow_the_rank_of_the_first_answer() -> None:
    queries = [
        Query("known_item", "q1", frozenset({5})),
        Query("known_item", "q2", frozenset({7, 8})),
        Query("known_item", "q3", frozenset({9})),
        Query("question", "q4", frozenset({1})),
    ]
    rankings = [[5, 1], [1, 2, 8], list(range(10, 30)), [2, 3, 4, 1]]
    result = score(queries, rankings)
    assert result["known_item"] == {
        "queries": 3,
        "recall_at_1": round(1 / 3, 4),
        "recall_at_10": round(2 / 3, 4),
        "mrr": round((1 + 1 / 3) / 3, 4),
    }
    assert result["question"]["mrr"] == 0.25 and result["question"]["recall_at_1"] == 0.0
    assert "reordered" not in result


def test_in_memory_ranking_is_by_cosine() -> None:
    chunks = np.eye(4, dtype=np.float32)
    queries = np.asarray([[0.1, 0.9, 0.3, 0.0]], dtype=np.float32)
    assert retrieval.rank_in_memory(chunks, queries) == [[1, 2, 0, 3]]


def test_the_hash_embedder_finds_copied_sentences() -> None:
    texts = _haystack()
    result = retrieval.quality({"hash": Settings(embedder="hash")}, texts[: -len(FACTS) * 2])
    hash_scores = result["by_model"]["hash"]
    assert result["queries"]["question"] == len(FACTS)
    assert hash_scores["known_item"]["recall_at_10"] >= 0.9
    assert hash_scores["known_item"]["mrr"] >= hash_scores["reordered"]["mrr"] * 0.9
    assert result["int8_cosine_to_fp32"] is None
