"""What every embedding backend provides, and the errors an HTTP backend adds.

The chunker needs ``count_tokens`` and ``max_input_tokens`` from the same
backend that embeds, so that no chunk is silently truncated by the model; the
chunk rows record ``name`` and ``version`` so that vectors from different
models are never mixed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

from ragstream.errors import EmbedderRejected, EmbedderUnavailable


class Embedder(ABC):
    """An embedding backend.

    Attributes:
        name: model name used in ids, e.g. ``hash-384``, ``all-MiniLM-L6-v2``,
            ``openai:text-embedding-3-small``.
        version: changes whenever the same text could get a different vector.
        dimensions: length of every vector.
        max_input_tokens: content tokens the model reads before truncating,
            after what it adds itself (e.g. [CLS]/[SEP]).
        served_model_id: for a remote model, the model id its endpoint last
            reported (its answer's ``model``); None for local models.
    """

    name: str
    version: str
    dimensions: int
    max_input_tokens: int
    served_model_id: str | None = None

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Content tokens of ``text`` in the model's own tokenizer, without specials."""

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """:meth:`count_tokens` for many texts; backends override it when faster."""
        return [self.count_tokens(t) for t in texts]

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized vector of ``dimensions`` floats per text, in order."""

    def close(self) -> None:
        """Release connections or memory; the embedder is unusable afterwards."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EndpointUnavailable(EmbedderUnavailable):
    """The embedding endpoint failed in a way that may pass (429, 5xx, timeout, network).

    ``retry_after_s`` carries the server's Retry-After hint when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        stage: str | None = "embed",
    ) -> None:
        super().__init__(message, stage=stage)
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class EndpointRejected(EmbedderRejected):
    """The embedding endpoint refused the request for good (4xx other than 408/429)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, stage: str | None = "embed"
    ) -> None:
        super().__init__(message, stage=stage)
        self.status_code = status_code


def l2_normalize(vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Rows scaled to unit length; all-zero rows are left as they are."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    normalized: npt.NDArray[np.float64] = array / np.where(norms == 0, 1, norms)
    return normalized
