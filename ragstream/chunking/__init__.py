"""Token-aware chunking of parsed documents, sized in the embedding model's tokens."""

from ragstream.chunking.chunker import (
    CHUNKER_VERSION,
    Chunk,
    ChunkerConfig,
    CountTokens,
    CountTokensBatch,
    chunk_document,
)
from ragstream.chunking.tokenizer import (
    MINILM_MAX_INPUT_TOKENS,
    MINILM_MAX_SEQ_LENGTH,
    TokenCounter,
    count_minilm_tokens,
    count_minilm_tokens_batch,
    minilm_tokenizer,
)

__all__ = [
    "CHUNKER_VERSION",
    "MINILM_MAX_INPUT_TOKENS",
    "MINILM_MAX_SEQ_LENGTH",
    "Chunk",
    "ChunkerConfig",
    "CountTokens",
    "CountTokensBatch",
    "TokenCounter",
    "chunk_document",
    "count_minilm_tokens",
    "count_minilm_tokens_batch",
    "minilm_tokenizer",
]
