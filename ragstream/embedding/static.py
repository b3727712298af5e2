"""A static embedding model distilled from all-MiniLM-L6-v2, for bulk work.

model2vec distils one vector per vocabulary token from the full model (each token
through the transformer once, then PCA to 256 dimensions and Zipf weighting):
a text's vector is then the mean of its tokens' vectors, no transformer at all.
It embeds orders of magnitude faster than the model it comes from, at a known
loss of quality (``bench/README.md``): for a large backfill, or as a first pass
before a ``ragstream reembed`` with the full model.

Distilling needs model2vec's ``distill`` extra and torch (``ragstream
distill-static``, once, where torch is installed); running the result needs only
numpy, safetensors and tokenizers. Chunks are sized for MiniLM (its tokenizer and
254-token limit), so the same chunks can be re-embedded by the full model later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ragstream.chunking.tokenizer import MINILM_MAX_INPUT_TOKENS, minilm_counter
from ragstream.embedding.base import Embedder
from ragstream.embedding.minilm import MissingExtraError

STATIC_NAME = "all-MiniLM-L6-v2-static"
PCA_DIMS = 256
DISTILL_HINT = (
    "distilling needs torch and model2vec's distill extra: "
    "pip install -e '.[minilm]' 'model2vec[distill]'"
)


def default_dir(cache_dir: Path) -> Path:
    return cache_dir / "static" / STATIC_NAME


def distill(target: Path) -> Path:
    """Distil the bundled all-MiniLM-L6-v2 into ``target`` with model2vec (no download)."""
    try:
        from model2vec.distill import distill as model2vec_distill
    except ImportError as exc:
        raise MissingExtraError(f"{exc}; {DISTILL_HINT}") from exc
    from ragstream.embedding.onnx_runtime import bundled_model

    model_dir, _ = bundled_model()
    model = model2vec_distill(model_name=str(model_dir), pca_dims=PCA_DIMS)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    return target


class StaticEmbedder(Embedder):
    """model2vec's static model, read from its saved folder: mean of token vectors."""

    max_input_tokens = MINILM_MAX_INPUT_TOKENS

    def __init__(self, model_dir: Path, *, name: str = STATIC_NAME) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise MissingExtraError(
                f"no static model in {model_dir}: run `ragstream distill-static` ({DISTILL_HINT})"
            )
        tensors = load_file(str(weights))
        self._vectors = tensors["embeddings"].astype(np.float32)
        self._weights = tensors.get("weights")
        self._mapping = tensors.get("mapping")
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self._normalize = bool(config.get("normalize", True))
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        max_length = config.get("max_length")
        if max_length:
            self._tokenizer.enable_truncation(int(max_length))
        else:
            self._tokenizer.no_truncation()
        self._unk = self._tokenizer.token_to_id("[UNK]")
        self.name = name
        self.dimensions = int(self._vectors.shape[1])
        with weights.open("rb") as handle:
            self.version = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
        self._counter = minilm_counter()  # chunks sized for the full model

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_batch(texts)

    def embed_array(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids = np.array([i for i in encoding.ids if i != self._unk], dtype=np.int64)
            if not ids.size:
                out[row, 0] = 1.0  # no known token: one fixed unit vector
                continue
            rows = self._vectors[self._mapping[ids] if self._mapping is not None else ids]
            if self._weights is not None:
                rows = rows * self._weights[ids][:, None]
            out[row] = rows.mean(axis=0)
        if self._normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1.0).astype(np.float32)
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.embed_array(texts).tolist()
        return vectors
