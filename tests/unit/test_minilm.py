"""The real all-MiniLM-L6-v2 backend: offline, 384-d, normalized, and sized by its own tokenizer.

Needs the ``minilm`` extra (torch); selected with ``-m torch`` by `make test-torch`.
Without the extra these tests fail rather than skip, so a run that asked for them
cannot pass vacuously.
"""

from __future__ import annotations

import math
import random
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ragstream.chunking import (
    ChunkerConfig,
    chunk_document,
    count_minilm_tokens,
)
from ragstream.documents import Block, ParsedDocument
from ragstream.embedding import make_embedder
from ragstream.embedding.minilm import MiniLMEmbedder
from ragstream.settings import Settings

pytestmark = [pytest.mark.minilm, pytest.mark.torch]


@pytest.fixture(scope="module")
def model() -> Iterator[MiniLMEmbedder]:
    """Loaded with every outgoing connection refused: it must not need the network."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access is disabled in this test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        embedder = MiniLMEmbedder(batch_size=8)
    yield embedder
    embedder.close()


def test_identity(model: MiniLMEmbedder) -> None:
    assert model.name == "all-MiniLM-L6-v2"
    assert model.dimensions == 384
    assert model.max_input_tokens == 254
    assert model.version


def test_vectors_are_384d_and_normalized(model: MiniLMEmbedder) -> None:
    vectors = model.embed(["A short sentence.", "", "汉字 and émojis 🚀", "word " * 1000])
    assert len(vectors) == 4
    for v in vectors:
        assert len(v) == 384
        assert math.isclose(float(np.linalg.norm(v)), 1.0, rel_tol=1e-5)
    assert model.embed([]) == []


def test_similar_sentences_score_higher(model: MiniLMEmbedder) -> None:
    query, close, far = model.embed(
        [
            "How do I reset my password?",
            "Steps to change a forgotten account password.",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    assert float(np.dot(query, close)) > float(np.dot(query, far)) + 0.3


def test_embeddings_are_deterministic(model: MiniLMEmbedder) -> None:
    texts = ["Kafka keeps partitions ordered.", "pgvector stores embeddings."]
    first, second = model.embed(texts), model.embed(texts)
    assert np.allclose(first, second, atol=1e-6)


def test_count_tokens_agrees_with_the_model_tokenizer(model: MiniLMEmbedder) -> None:
    hf = model._model.tokenizer
    rng = random.Random(5)
    samples = [
        "Hello, World!",
        "naïve café façade",
        "数据流水线把文档切成块。",
        "def f(x):\n    return x ** 2  # squared",
        "https://example.com/a/b?c=d&e=f",
        "x" * 300,
        "🚀 \u200b \x00 control",
        " ".join(
            rng.choice(["alpha", "beta", "gamma", "internationalization"]) for _ in range(500)
        ),
    ]
    for text in samples:
        ids = hf(text, add_special_tokens=False, truncation=False)["input_ids"]
        assert model.count_tokens(text) == len(ids) == count_minilm_tokens(text)
    assert model.count_tokens_batch(samples) == [model.count_tokens(t) for t in samples]


def test_chunks_fit_the_model_unchanged(model: MiniLMEmbedder) -> None:
    """A full chunk reaches the model whole: its tokenized input is not truncated."""
    rng = random.Random(9)
    words = [
        "vector",
        "index",
        "replica",
        "offset",
        "schema",
        "throughput",
        "façade",
        "3.14",
        "x86_64",
    ]
    text = " ".join(rng.choice(words) for _ in range(4000))
    doc = ParsedDocument((Block(text, page=1),), "text/plain", "test", "0")
    config = ChunkerConfig(256, 32, model.max_input_tokens)
    chunks = chunk_document(
        doc, config, model.count_tokens, count_tokens_batch=model.count_tokens_batch
    )
    assert max(c.token_count for c in chunks) >= 240
    features = model._model.tokenize([c.text for c in chunks])
    lengths = features["attention_mask"].sum(dim=1).tolist()
    assert lengths == [c.token_count + 2 for c in chunks]
    assert max(lengths) <= model._model.max_seq_length


def test_make_embedder_builds_minilm() -> None:
    embedder = make_embedder(Settings(embedder="minilm", embed_runtime="torch", embed_batch_size=4))
    assert isinstance(embedder, MiniLMEmbedder)
    assert len(embedder.embed(["ok"])[0]) == 384


def test_embed_threads_sets_the_model_threads_and_keeps_the_vectors(
    model: MiniLMEmbedder,
) -> None:
    import torch

    default = torch.get_num_threads()
    texts = ["The cat sat on the mat.", "Kafka partitions order messages by key."]
    expected = model.embed(texts)
    try:
        one = make_embedder(Settings(embedder="minilm", embed_runtime="torch", embed_threads=1))
        assert torch.get_num_threads() == 1
        got = one.embed(texts)
        one.close()
    finally:
        torch.set_num_threads(default)
    for a, b in zip(got, expected, strict=True):
        assert np.allclose(a, b, atol=1e-5)
