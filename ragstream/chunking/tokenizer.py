"""The all-MiniLM-L6-v2 WordPiece tokenizer, shipped with the package.

Chunks are sized in the embedding model's own tokens, and most deployments
(CI, the ``hash`` embedder, the chunk stage) must not need torch or the model
weights for that. So the model's ``tokenizer.json`` (Apache-2.0, see
``minilm_tokenizer.NOTICE``) is vendored next to this module and loaded with
the Rust ``tokenizers`` library, which is a core dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources

from tokenizers import Encoding, Tokenizer

TOKENIZER_FILE = "minilm_tokenizer.json"
"""Vendored copy of all-MiniLM-L6-v2's tokenizer.json, byte for byte."""

MINILM_MAX_SEQ_LENGTH = 256
"""all-MiniLM-L6-v2 truncates its input to this many tokens, specials included."""

MINILM_SPECIAL_TOKENS = 2
"""[CLS] and [SEP], added around every input."""

MINILM_MAX_INPUT_TOKENS = MINILM_MAX_SEQ_LENGTH - MINILM_SPECIAL_TOKENS
"""Content tokens all-MiniLM-L6-v2 sees before it silently truncates."""


def load_tokenizer(json_text: str) -> Tokenizer:
    """Build a tokenizer from its JSON with truncation and padding turned off.

    The upstream file truncates at 128 tokens and pads to 128, which would make
    every count wrong; counting needs the full, unpadded encoding.
    """
    tokenizer = Tokenizer.from_str(json_text)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@lru_cache(maxsize=1)
def minilm_tokenizer() -> Tokenizer:
    """The shared vendored tokenizer (thread-safe for encoding; do not reconfigure it)."""
    data = resources.files(__package__).joinpath(TOKENIZER_FILE).read_text(encoding="utf-8")
    return load_tokenizer(data)


class TokenCounter:
    """Counts content tokens (no specials) with a ``tokenizers`` tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        # encode_batch_fast (tokenizers >= 0.20) skips character offsets: ~25% faster.
        self.encode_batch: Callable[..., list[Encoding]] = getattr(
            tokenizer, "encode_batch_fast", tokenizer.encode_batch
        )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Counts many texts in one call; the Rust side spreads them over cores."""
        if not texts:
            return []
        encodings = self.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


@lru_cache(maxsize=1)
def minilm_counter() -> TokenCounter:
    """A :class:`TokenCounter` over the vendored MiniLM tokenizer."""
    return TokenCounter(minilm_tokenizer())


def count_minilm_tokens(text: str) -> int:
    """all-MiniLM-L6-v2 content tokens in ``text`` (without [CLS]/[SEP])."""
    return minilm_counter().count(text)


def count_minilm_tokens_batch(texts: Sequence[str]) -> list[int]:
    """:func:`count_minilm_tokens` for many texts at once."""
    return minilm_counter().count_batch(texts)
