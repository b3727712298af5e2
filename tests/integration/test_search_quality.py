"""The retrieval benchmark's smoke form: the real search, every mode, on the bench corpus.

The same code as ``ragstream bench``'s retrieval phase, on a small haystack:
its bars hold here too (hybrid finds a copied sentence first, and is never
worse than the better of vector and keyword alone), so a change that breaks
keyword search, the fusion or the language configurations fails ``make test``.
"""

from __future__ import annotations

import pytest

from ragstream.benchmark import corpus, limits, search_quality
from ragstream.settings import Settings

pytestmark = pytest.mark.integration


def test_every_mode_scored_and_the_bars_held(settings: Settings) -> None:
    docs = corpus.make_corpus(8, seed=5, max_doc_mb=0.05)
    texts = limits.prepare(settings, docs).texts
    report = search_quality.measure(
        settings, {"hash": settings}, texts, per_kind=20, max_chunks=300, scale=3000
    )
    print(report)
    assert report["queries"]["known_item"] == report["queries"]["reordered"] == 20
    assert report["queries"]["question"] == 20
    scores = report["by_embedder"]["hash"]
    for mode in ("vector", "keyword", "hybrid"):
        assert set(scores[mode]) >= {"known_item", "reordered", "question", "latency_ms"}
    # Keyword search finds copied sentences; the questions' words are mostly not the facts'.
    assert scores["keyword"]["known_item"]["recall_at_1"] >= 0.9
    assert report["targets"]["known_item_target_met"], report["targets"]
    assert report["targets"]["hybrid_target_met"], report["targets"]
    scale = report["at_scale"]
    assert scale["chunks"] >= 3000 and scale["latency_ms"]["hybrid"]["p95"] is not None
