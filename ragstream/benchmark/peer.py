"""The peer: LlamaIndex's ``IngestionPipeline`` over the same files with the same model.

It reads the corpus directory with ``SimpleDirectoryReader`` (PDFs page by
page with pypdf, as LlamaIndex's own PDF reader does; every other file as
text), splits with ``SentenceSplitter`` and embeds with the same model:
all-MiniLM-L6-v2 through LlamaIndex's HuggingFace wrapper, or ragstream's
``hash`` embedder wrapped as a LlamaIndex embedding. Loading the model is not
timed. A node whose embedded text (LlamaIndex embeds metadata with the text)
is longer than the model's input is truncated by the model; those are counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ragstream.chunking import MINILM_MAX_INPUT_TOKENS, count_minilm_tokens_batch
from ragstream.chunking.tokenizer import minilm_tokenizer
from ragstream.settings import Settings

PEER_EXTRA_HINT = "the peer needs the bench extra: pip install 'ragstream[bench]'"


def available() -> str | None:
    """None when LlamaIndex can run here, else why not."""
    try:
        import llama_index.core  # noqa: F401
    except ImportError:
        return PEER_EXTRA_HINT
    return None


def _pdf_reader() -> Any:
    from llama_index.core import Document
    from llama_index.core.readers.base import BaseReader

    class PypdfReader(BaseReader):
        """One Document per page, text by pypdf: what llama-index-readers-file's PDFReader does."""

        def load_data(self, file: Path, extra_info: dict[str, Any] | None = None) -> list[Any]:
            import pypdf

            with open(file, "rb") as fp:
                pdf = pypdf.PdfReader(fp)
                return [
                    Document(
                        text=page.extract_text(),
                        metadata={
                            "page_label": pdf.page_labels[i],
                            "file_name": Path(file).name,
                            **(extra_info or {}),
                        },
                    )
                    for i, page in enumerate(pdf.pages)
                ]

    return PypdfReader()


def _embedding(settings: Settings) -> Any:
    if settings.embedder == "minilm":
        os.environ["HF_HUB_OFFLINE"] = "1"
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        from ragstream.embedding.minilm import model_directory

        return HuggingFaceEmbedding(model_name=str(model_directory()), device="cpu")

    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    from ragstream.embedding import make_embedder

    class RagstreamEmbedding(BaseEmbedding):
        """ragstream's own embedder behind LlamaIndex's embedding interface."""

        _embedder: Any = PrivateAttr()

        def __init__(self, embedder: Any) -> None:
            super().__init__(model_name=embedder.name)
            self._embedder = embedder

        def _get_text_embedding(self, text: str) -> list[float]:
            vectors: list[list[float]] = self._embedder.embed([text])
            return vectors[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            vectors: list[list[float]] = self._embedder.embed(texts)
            return vectors

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

    return RagstreamEmbedding(make_embedder(settings))


def _minilm_tokens(text: str) -> list[int]:
    ids: list[int] = minilm_tokenizer().encode(text, add_special_tokens=False).ids
    return ids


def run_peer(
    settings: Settings,
    directory: Path,
    *,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
) -> dict[str, Any]:
    """One ingestion of ``directory``; ``chunk_size`` None keeps SentenceSplitter's defaults
    (tiktoken's tokens, so about half its chunks outgrow the model), else the size is
    counted in the model's own tokens, as ours is: chunks that fit the model."""
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode

    embed_model = _embedding(settings)
    splitter = (
        SentenceSplitter()
        if chunk_size is None
        else SentenceSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap or 0, tokenizer=_minilm_tokens
        )
    )
    files = sorted(p for p in directory.iterdir() if p.is_file())
    started = time.perf_counter()
    documents = SimpleDirectoryReader(
        input_files=[str(p) for p in files], file_extractor={".pdf": _pdf_reader()}
    ).load_data()
    nodes = IngestionPipeline(transformations=[splitter, embed_model]).run(documents=documents)
    elapsed = time.perf_counter() - started
    embedded = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    tokens = count_minilm_tokens_batch(embedded)
    truncated = sum(1 for n in tokens if n > MINILM_MAX_INPUT_TOKENS)
    return {
        "splitter": (
            f"SentenceSplitter(chunk_size={splitter.chunk_size}, "
            f"chunk_overlap={splitter.chunk_overlap})"
        ),
        "documents": len(files),
        "chunks": len(nodes),
        "seconds": elapsed,
        "documents_per_s": len(files) / elapsed if elapsed else 0.0,
        "chunks_per_s": len(nodes) / elapsed if elapsed else 0.0,
        "truncated_chunks": truncated,
        "truncated_share": truncated / len(nodes) if nodes else 0.0,
    }
