"""A deterministic feature-hashing embedder: no model, no torch, fast.

It exists for tests and CI: vectors are stable across processes and machines,
similar texts (shared word pieces) get similar vectors, and counting uses the
same MiniLM tokenizer and 254-token limit as the real model, so chunks made in
tests look like production chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ragstream.chunking.tokenizer import MINILM_MAX_INPUT_TOKENS, minilm_counter
from ragstream.embedding.base import Embedder

HASH_VERSION = "1"
"""Bump when the hashing scheme changes (it changes every vector)."""

_PERSON = b"ragstream-hash"  # blake2b personalization: our own hash family


def _digest(token: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(token.encode("utf-8"), digest_size=8, person=_PERSON).digest(), "little"
    )


@lru_cache(maxsize=8)
def _tables(dimensions: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    """Bucket and sign of every vocabulary token, hashed once, plus the empty-text bucket."""
    tokenizer = minilm_counter().tokenizer
    vocab: dict[str, int] = tokenizer.get_vocab()
    buckets = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    signs = np.ones(tokenizer.get_vocab_size(), dtype=np.float64)
    for token, index in vocab.items():
        h = _digest(token)
        buckets[index] = h % dimensions
        signs[index] = -1.0 if h >> 63 else 1.0
    return buckets, signs, _digest("") % dimensions


class HashEmbedder(Embedder):
    """Signed bag of MiniLM word pieces, hashed with blake2b into ``dimensions`` buckets."""

    version = HASH_VERSION
    max_input_tokens = MINILM_MAX_INPUT_TOKENS

    def __init__(self, dimensions: int = 384) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be positive")
        self.dimensions = dimensions
        self.name = f"hash-{dimensions}"
        self._counter = minilm_counter()
        self._buckets, self._signs, self._empty_bucket = _tables(dimensions)

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_batch(texts)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        out = np.zeros((len(encodings), self.dimensions), dtype=np.float64)
        for row, encoding in zip(out, encodings, strict=True):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            if ids.size:
                row += np.bincount(
                    self._buckets[ids], weights=self._signs[ids], minlength=self.dimensions
                )
            norm = float(np.linalg.norm(row))
            if norm == 0.0:
                # Empty text, or every bucket cancelled out: a fixed unit vector,
                # so that cosine distance stays defined.
                row[self._empty_bucket] = 1.0
            else:
                row /= norm
        result: list[list[float]] = out.tolist()
        return result
