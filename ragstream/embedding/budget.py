"""How many tokens a chunk may have, counted the embedder's way, without loading the model.

The chunk stage needs the embedding model's tokenizer and input limit, not its
weights: a chunk worker must stay small and must not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragstream.chunking.tokenizer import (
    MINILM_MAX_INPUT_TOKENS,
    count_minilm_tokens,
    count_minilm_tokens_batch,
)
from ragstream.settings import Settings


@dataclass(frozen=True)
class TokenBudget:
    count_tokens: Callable[[str], int]
    # Many texts per tokenizer call: what the chunker uses for a document's thousands of words.
    count_tokens_batch: Callable[[Sequence[str]], list[int]]
    max_input_tokens: int


def token_budget(settings: Settings) -> TokenBudget:
    """``hash`` and ``minilm``: the MiniLM tokenizer, 254 tokens (256 with the two specials).

    ``openai`` counts with the same tokenizer, a conservative stand-in, up to its own limit.
    """
    if settings.embedder == "openai":
        return TokenBudget(
            count_minilm_tokens, count_minilm_tokens_batch, settings.openai_max_input_tokens
        )
    return TokenBudget(count_minilm_tokens, count_minilm_tokens_batch, MINILM_MAX_INPUT_TOKENS)
