"""Model specs of the hash family, per-model index names, and the identity check."""

from __future__ import annotations

import pytest

from ragstream.db import vectors
from ragstream.embedding import HashEmbedder, registry
from ragstream.settings import Settings


def test_hash_specs_take_their_dimension_from_the_name() -> None:
    settings = Settings()
    assert registry.canonical_spec(settings, "hash") == "hash-384"  # the alias
    for dims in (384, 768, 1536):
        spec = registry.canonical_spec(settings, f"hash-{dims}")
        chosen = registry.model_settings(settings, spec)
        assert (spec, chosen.embedder, chosen.hash_dimensions) == (f"hash-{dims}", "hash", dims)
        assert HashEmbedder(chosen.hash_dimensions).name == spec
    assert registry.configured_spec(settings.model_copy(update={"embedder": "hash"})) == "hash-384"
    for bad in ("hash-", "hash-x", "minilm:big", "word2vec"):
        with pytest.raises(registry.UnknownModel):
            registry.canonical_spec(settings, bad)


def test_index_names_are_distinct_valid_and_short() -> None:
    names = {
        vectors.index_name(model, dims)
        for model, dims in [
            ("hash-384", 384),
            ("hash-768", 768),
            ("openai:text-embedding-3-small", 1536),
            ("openai:text-embedding-3-small", 512),
            ("openai:text_embedding_3_small", 1536),  # same slug, another model
        ]
    }
    assert len(names) == 5
    assert all(len(n) <= 63 and n.replace("_", "").isalnum() for n in names)
    assert vectors.index_name("hash-384", 384) == vectors.index_name("hash-384", 384)


def test_an_embedder_disagreeing_with_the_record_is_refused() -> None:
    embedder = HashEmbedder(768)
    registry.check(embedder, "1", 768)
    registry.check(embedder, None, None)  # nothing recorded yet
    with pytest.raises(registry.ModelMismatch, match="768-d vectors, the database holds 384"):
        registry.check(embedder, "1", 384)
    with pytest.raises(registry.ModelMismatch, match="version 0"):
        registry.check(embedder, "0", 768)


def test_minilm_is_int8_on_onnx_by_default_and_each_precision_is_a_spec_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """int8 vectors are another model's: a database whose active model is the fp32
    ``minilm`` keeps being served fp32 by workers whose default is int8."""
    from ragstream.embedding import onnx_runtime

    assert Settings().embed_precision == "auto"
    assert onnx_runtime.minilm_precision("auto", "onnx") == "int8"
    assert onnx_runtime.minilm_precision("auto", "torch") == "fp32"
    assert onnx_runtime.minilm_precision("fp32", "onnx") == "fp32"
    with pytest.raises(ValueError, match="unknown embed precision"):
        onnx_runtime.minilm_precision("int4")
    installed = {"onnxruntime"}
    monkeypatch.setattr(onnx_runtime, "_installed", lambda name: name in installed)
    minilm = Settings(embedder="minilm")
    assert registry.configured_spec(minilm) == "minilm-int8"
    assert registry.configured_spec(minilm.model_copy(update={"embed_precision": "fp32"})) == (
        "minilm"
    )
    installed = {"torch", "sentence_transformers"}  # torch only: fp32
    assert registry.configured_spec(minilm) == "minilm"
    for spec, precision in (("minilm", "fp32"), ("minilm-int8", "int8")):
        assert registry.canonical_spec(minilm, spec) == spec
        chosen = registry.model_settings(minilm, spec)
        assert (chosen.embedder, chosen.embed_precision) == ("minilm", precision)
