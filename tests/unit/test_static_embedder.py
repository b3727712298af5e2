"""The static model's embedder (``RAGSTREAM_EMBEDDER=static``) on a small model written
in model2vec's format: a text's vector is the normalized mean of its tokens' rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from ragstream.chunking.tokenizer import minilm_counter
from ragstream.embedding import MissingExtraError, make_embedder
from ragstream.embedding.onnx_runtime import bundled_model
from ragstream.embedding.static import STATIC_NAME, StaticEmbedder
from ragstream.settings import Settings


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The bundled MiniLM's tokenizer and random 8-dimensional token rows."""
    source, _ = bundled_model()
    shutil.copy(source / "tokenizer.json", tmp_path / "tokenizer.json")
    vocab = Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size()
    rows = np.random.default_rng(7).standard_normal((vocab, 8)).astype(np.float16)
    save_file({"embeddings": rows}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"normalize": True, "max_length": 512}))
    return tmp_path, rows.astype(np.float32)


def test_a_text_is_the_normalized_mean_of_its_token_rows(model: tuple[Path, np.ndarray]) -> None:
    folder, rows = model
    embedder = make_embedder(Settings(embedder="static", static_model_dir=folder))
    assert isinstance(embedder, StaticEmbedder)
    assert (embedder.name, embedder.dimensions) == (STATIC_NAME, 8)
    assert len(embedder.version) == 16
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # the upstream file pads to 128
    text = "Glaciers carve valleys slowly"
    ids = tokenizer.encode(text, add_special_tokens=False).ids  # no [CLS]/[SEP]
    expected = rows[ids].mean(axis=0)
    expected /= np.linalg.norm(expected)
    [vector] = embedder.embed([text])
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)
    unknown = tokenizer.token_to_id("[UNK]")
    assert unknown not in tokenizer.encode("Glaciers", add_special_tokens=False).ids
    empty = embedder.embed(["", "Glaciers carve valleys slowly"])
    assert np.isclose(np.linalg.norm(empty[0]), 1.0) and np.isclose(np.linalg.norm(empty[1]), 1.0)


def test_chunks_are_counted_and_sized_for_the_full_model(model: tuple[Path, np.ndarray]) -> None:
    embedder = StaticEmbedder(model[0])
    text = "Tidal turbines turn twice a day as the sea rises and falls. " * 5
    assert embedder.count_tokens(text) == minilm_counter().count(text)
    assert embedder.max_input_tokens == 254


def test_without_a_distilled_model_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(MissingExtraError, match="ragstream distill-static"):
        make_embedder(Settings(embedder="static", static_model_dir=tmp_path))
