"""Embedding backends behind one interface, chosen by ``Settings.embedder``.

``hash`` needs nothing but numpy and the bundled tokenizer (tests, CI);
``minilm`` runs all-MiniLM-L6-v2 locally, on ONNX Runtime (the ``onnx`` extra,
no torch) or on torch (the ``minilm`` extra);
``openai`` calls any OpenAI-compatible embeddings endpoint; ``static`` runs
all-MiniLM-L6-v2 distilled into a static model (:mod:`ragstream.embedding.static`).
All produce L2-normalized vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragstream.embedding.base import Embedder, EndpointRejected, EndpointUnavailable
from ragstream.embedding.hashing import HashEmbedder
from ragstream.embedding.minilm import MissingExtraError
from ragstream.embedding.openai_compat import OpenAIEmbedder

if TYPE_CHECKING:
    from ragstream.settings import Settings

__all__ = [
    "Embedder",
    "EndpointRejected",
    "EndpointUnavailable",
    "HashEmbedder",
    "MissingExtraError",
    "OpenAIEmbedder",
    "make_embedder",
]


def make_embedder(settings: Settings) -> Embedder:
    """The backend named by ``settings.embedder``, configured from ``settings``.

    ``minilm`` runs on ONNX Runtime or torch as ``settings.embed_runtime`` says
    (see :func:`ragstream.embedding.onnx_runtime.minilm_runtime`); torch is imported
    only for the latter. Without the needed extra this raises
    :class:`MissingExtraError` (an ImportError) naming the install command.
    """
    if settings.embedder == "hash":
        return HashEmbedder(settings.hash_dimensions)
    if settings.embedder == "minilm":
        from ragstream.embedding.onnx_runtime import minilm_precision, minilm_runtime

        runtime = minilm_runtime(settings.embed_runtime)
        precision = minilm_precision(settings.embed_precision, runtime)
        if runtime == "onnx":  # torch-free
            from ragstream.embedding.onnx_runtime import OnnxEmbedder

            return OnnxEmbedder(
                batch_size=settings.embed_batch_size,
                threads=settings.embed_threads,
                cache_dir=settings.cache_dir / "onnx",
                precision=precision,
            )
        if precision != "fp32":
            raise ValueError("RAGSTREAM_EMBED_PRECISION=int8 needs the onnx runtime")
        from ragstream.embedding.minilm import MiniLMEmbedder

        return MiniLMEmbedder(batch_size=settings.embed_batch_size, threads=settings.embed_threads)
    if settings.embedder == "static":
        from ragstream.embedding.static import StaticEmbedder, default_dir

        return StaticEmbedder(settings.static_model_dir or default_dir(settings.cache_dir))
    if settings.embedder == "openai":
        key = settings.openai_api_key
        return OpenAIEmbedder(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=key.get_secret_value() if key is not None else None,
            dimensions=settings.openai_dimensions,
            max_input_tokens=settings.openai_max_input_tokens,
            timeout_s=settings.openai_timeout_s,
            batch_size=settings.embed_batch_size,
            tokens_per_minute=settings.openai_tokens_per_minute,
        )
    raise ValueError(f"unknown embedder {settings.embedder!r}")
