"""An ONNX graph of a sentence-transformers BERT model, built from its safetensors weights.

No torch: the weights are read with ``safetensors.numpy`` and the graph is
written node by node with ``onnx.helper``, from the model's own files:

* ``config.json``: the BERT encoder (hidden size, heads, layers, GELU, LayerNorm epsilon);
* ``modules.json``: Transformer, then Pooling, then (optionally) Normalize;
* ``1_Pooling/config.json`` (the Pooling module's folder): which poolings, concatenated
  in sentence-transformers' order (CLS, max, mean, mean-sqrt-len).

The graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64,
``[batch, sequence]``) and returns ``sentence_embedding`` (float32,
``[batch, dimensions]``): exactly what ``SentenceTransformer.encode`` computes in
fp32, so its vectors are interchangeable with the torch backend's.

Self-attention is either plain ONNX operators (``fused=False``) or ONNX
Runtime's fused ``com.microsoft.Attention`` kernel (``fused=True``, the default,
about a third faster on CPU); both are checked against sentence-transformers
by the tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnx

GRAPH_VERSION = "2"
"""Changes whenever the builder could emit a different graph; part of the cache key."""

OPSET = 17
"""ai.onnx opset: LayerNormalization (17) is the newest operator used."""

MS_DOMAIN = "com.microsoft"

POOLING_MODES = (  # sentence-transformers concatenates the chosen poolings in this order
    "pooling_mode_cls_token",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
)
POOLING_NAMES = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
}
UNSUPPORTED_POOLING = (
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"


class UnsupportedModel(ValueError):
    """The model's configuration asks for something this builder does not implement."""


@dataclass(frozen=True)
class ModelSpec:
    """What the model files say, reduced to what the graph and the tokenizer need."""

    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    max_seq_length: int
    pooling: tuple[str, ...]
    normalize: bool
    weights_prefix: str

    @property
    def dimensions(self) -> int:
        return self.hidden_size * len(self.pooling)


def _module_type(entry: Mapping[str, Any]) -> str:
    # sentence-transformers >= 3.1 may write "sentence_transformers.models.X" or the
    # module's full path (…sentence_transformers.models.Pooling.Pooling); compare the class.
    kind = str(entry.get("type", ""))
    parts = kind.split(".")
    return "sentence_transformers.models." + parts[-1] if parts else kind


def read_spec(model_dir: Path, weight_names: set[str] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of the sentence-transformers model in ``model_dir``.

    Raises :class:`UnsupportedModel` for anything but BERT + pooling (+ normalize).
    """
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    else:  # a bare transformers model: sentence-transformers would mean-pool it
        modules = [{"type": TRANSFORMER, "path": ""}, {"type": POOLING, "path": ""}]
    kinds = [_module_type(m) for m in modules]
    if kinds not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        raise UnsupportedModel(f"modules {kinds}: only Transformer, Pooling[, Normalize]")
    if config.get("model_type", "bert") != "bert":
        raise UnsupportedModel(f"model_type {config.get('model_type')!r}: only bert")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("only absolute position embeddings")
    hidden_act = str(config.get("hidden_act", "gelu"))
    if hidden_act not in ("gelu", "relu"):
        raise UnsupportedModel(f"hidden_act {hidden_act!r}: only gelu (exact) and relu")

    pooling_config: dict[str, Any] = {"pooling_mode_mean_tokens": True}
    pooling_path = model_dir / str(modules[1].get("path", "")) / "config.json"
    if modules[1].get("path") and pooling_path.is_file():
        pooling_config = json.loads(pooling_path.read_text(encoding="utf-8"))
    if "pooling_mode" in pooling_config:  # the single-string form ("mean", "cls", ...)
        mode = str(pooling_config["pooling_mode"])
        key = POOLING_NAMES.get(mode)
        if key is None:
            raise UnsupportedModel(f"pooling_mode {mode!r} is not implemented")
        pooling_config = {key: True}
    for key in UNSUPPORTED_POOLING:
        if pooling_config.get(key):
            raise UnsupportedModel(f"{key} is not implemented")
    pooling = tuple(mode for mode in POOLING_MODES if pooling_config.get(mode))
    if not pooling:
        raise UnsupportedModel(f"no supported pooling in {pooling_config}")

    max_seq_length = int(config.get("max_position_embeddings", 512))
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if value is not None:
            max_seq_length = min(int(value), max_seq_length)

    prefix = ""
    if weight_names is not None and "bert.embeddings.word_embeddings.weight" in weight_names:
        prefix = "bert."
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    if hidden % heads:
        raise UnsupportedModel(f"hidden_size {hidden} is not a multiple of {heads} heads")
    return ModelSpec(
        hidden_size=hidden,
        num_heads=heads,
        num_layers=int(config["num_hidden_layers"]),
        intermediate_size=int(config["intermediate_size"]),
        hidden_act=hidden_act,
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        max_seq_length=max_seq_length,
        pooling=pooling,
        normalize=NORMALIZE in kinds,
        weights_prefix=prefix,
    )


class _Graph:
    """Collects nodes and initializers, naming every intermediate value uniquely."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: npt.ArrayLike, dtype: Any = np.float32) -> str:
        name = self.name(hint)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        domain = attrs.pop("domain", None)
        self.nodes.append(
            self.helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs)
        )
        return out


def build_graph(
    spec: ModelSpec, weights: Mapping[str, npt.NDArray[Any]], *, fused: bool = True
) -> onnx.ModelProto:
    """The ONNX model of ``spec`` with ``weights`` (safetensors names) as initializers."""
    from onnx import TensorProto, helper

    g = _Graph()
    p = spec.weights_prefix

    def w(name: str) -> npt.NDArray[np.float32]:
        try:
            array = weights[p + name]
        except KeyError as exc:
            raise UnsupportedModel(f"weight {p + name} is missing") from exc
        return np.asarray(array, dtype=np.float32)

    def linear(x: str, name: str, hint: str) -> str:
        # torch Linear: y = x @ W.T + b
        weight = g.const(f"{hint}_w", w(f"{name}.weight").T)
        bias = g.const(f"{hint}_b", w(f"{name}.bias"))
        return g.op("Add", [g.op("MatMul", [x, weight], f"{hint}_mm"), bias], hint)

    def add_and_norm(x: str, residual: str, dense: str, norm: str, hint: str) -> str:
        """LayerNorm(x @ W.T + b + residual): ONNX Runtime's SkipLayerNormalization when fused."""
        if not fused:
            return layer_norm(g.op("Add", [linear(x, dense, hint), residual]), norm, f"{hint}_ln")
        weight = g.const(f"{hint}_w", w(f"{dense}.weight").T)
        projected = g.op("MatMul", [x, weight], f"{hint}_mm")
        inputs = [projected, residual]
        inputs += [g.const(f"{hint}_ln_{k}", w(f"{norm}.{k}")) for k in ("weight", "bias")]
        inputs.append(g.const(f"{hint}_b", w(f"{dense}.bias")))
        return g.op(
            "SkipLayerNormalization",
            inputs,
            f"{hint}_ln",
            domain=MS_DOMAIN,
            epsilon=spec.layer_norm_eps,
        )

    def layer_norm(x: str, name: str, hint: str) -> str:
        scale = g.const(f"{hint}_scale", w(f"{name}.weight"))
        bias = g.const(f"{hint}_bias", w(f"{name}.bias"))
        return g.op(
            "LayerNormalization", [x, scale, bias], hint, axis=-1, epsilon=spec.layer_norm_eps
        )

    hidden, heads = spec.hidden_size, spec.num_heads
    head_dim = hidden // heads

    # --- embeddings: word + position + token type, then LayerNorm -------------
    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    word = g.op("Gather", [g.const("word_emb", w("embeddings.word_embeddings.weight")), ids])
    token_type = g.op(
        "Gather", [g.const("type_emb", w("embeddings.token_type_embeddings.weight")), types]
    )
    # Positions 0..S-1: the first S rows of the table (no Range: 1-D shapes only).
    seq_len = g.op(
        "Slice",
        [g.op("Shape", [ids]), g.const("one", [1], np.int64), g.const("two", [2], np.int64)],
        "seq_len",
    )
    position = g.op(
        "Slice",
        [
            g.const("pos_emb", w("embeddings.position_embeddings.weight")),
            g.const("zero", [0], np.int64),
            seq_len,
            g.const("axis0", [0], np.int64),
        ],
        "position",
    )
    x = g.op("Add", [g.op("Add", [word, token_type]), position], "emb_sum")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_ln")

    mask_f = g.op("Cast", [mask], "mask_f", to=TensorProto.FLOAT)
    if fused:
        mask_i32 = g.op("Cast", [mask], "mask_i32", to=TensorProto.INT32)
    else:
        # [B, S] -> [B, 1, 1, S]; 0 where attended, float32 min where padded (as transformers).
        inverted = g.op("Sub", [g.const("one_f", 1.0), mask_f], "mask_inv")
        bias_4d = g.op("Mul", [inverted, g.const("neg", np.finfo(np.float32).min)], "mask_bias")
        mask_bias = g.op("Unsqueeze", [bias_4d, g.const("axes12", [1, 2], np.int64)], "mask_4d")
        split_shape = g.const("split_shape", [0, 0, heads, head_dim], np.int64)
        merge_shape = g.const("merge_shape", [0, 0, hidden], np.int64)
        scale = g.const("scale", 1.0 / math.sqrt(head_dim))

    # --- encoder layers --------------------------------------------------------
    for i in range(spec.num_layers):
        layer = f"encoder.layer.{i}"
        att = f"{layer}.attention"
        if fused:
            qkv_w = np.concatenate(
                [w(f"{att}.self.{k}.weight").T for k in ("query", "key", "value")], axis=1
            )
            qkv_b = np.concatenate([w(f"{att}.self.{k}.bias") for k in ("query", "key", "value")])
            context = g.op(
                "Attention",
                [x, g.const(f"l{i}_qkv_w", qkv_w), g.const(f"l{i}_qkv_b", qkv_b), mask_i32],
                f"l{i}_attention",
                domain=MS_DOMAIN,
                num_heads=heads,
            )
        else:

            def heads_of(name: str, hint: str) -> str:
                projected = linear(x, f"{att}.self.{name}", hint)  # noqa: B023
                split = g.op("Reshape", [projected, split_shape], f"{hint}_split")
                return g.op("Transpose", [split], f"{hint}_t", perm=[0, 2, 1, 3])

            q = heads_of("query", f"l{i}_q")
            k = heads_of("key", f"l{i}_k")
            v = heads_of("value", f"l{i}_v")
            k_t = g.op("Transpose", [k], f"l{i}_kt", perm=[0, 1, 3, 2])
            scores = g.op("Mul", [g.op("MatMul", [q, k_t], f"l{i}_qk"), scale], f"l{i}_scores")
            scores = g.op("Add", [scores, mask_bias], f"l{i}_masked")
            probs = g.op("Softmax", [scores], f"l{i}_probs", axis=-1)
            ctx = g.op("MatMul", [probs, v], f"l{i}_ctx")
            ctx = g.op("Transpose", [ctx], f"l{i}_ctx_t", perm=[0, 2, 1, 3])
            context = g.op("Reshape", [ctx, merge_shape], f"l{i}_context")
        x = add_and_norm(
            context, x, f"{att}.output.dense", f"{att}.output.LayerNorm", f"l{i}_att_out"
        )

        inner = linear(x, f"{layer}.intermediate.dense", f"l{i}_ffn_in")
        if spec.hidden_act == "gelu":  # exact: 0.5 x (1 + erf(x / sqrt 2)); ORT fuses it
            erf = g.op("Erf", [g.op("Div", [inner, g.const("sqrt2", math.sqrt(2.0))])])
            inner = g.op(
                "Mul",
                [g.op("Mul", [inner, g.const("half", 0.5)]), g.op("Add", [erf, g.const("1", 1.0)])],
                f"l{i}_gelu",
            )
        else:
            inner = g.op("Relu", [inner], f"l{i}_relu")
        x = add_and_norm(
            inner, x, f"{layer}.output.dense", f"{layer}.output.LayerNorm", f"l{i}_ffn_out"
        )

    # --- pooling, as sentence_transformers.models.Pooling ------------------------
    mask_3d = g.op("Unsqueeze", [mask_f, g.const("axis2", [2], np.int64)], "mask_3d")
    axis1 = g.const("axis1", [1], np.int64)
    pooled: list[str] = []
    summed = counted = ""
    if {"pooling_mode_mean_tokens", "pooling_mode_mean_sqrt_len_tokens"} & set(spec.pooling):
        summed = g.op("ReduceSum", [g.op("Mul", [x, mask_3d]), axis1], "masked_sum", keepdims=0)
        counted = g.op("ReduceSum", [mask_3d, axis1], "token_count", keepdims=0)
        counted = g.op("Max", [counted, g.const("min_count", 1e-9)], "token_count_clamped")
    for mode in spec.pooling:
        if mode == "pooling_mode_cls_token":
            pooled.append(g.op("Gather", [x, g.const("first", 0, np.int64)], "cls", axis=1))
        elif mode == "pooling_mode_max_tokens":
            # Padded positions count as -1e9, as sentence-transformers sets them.
            padded = g.op("Mul", [g.op("Sub", [g.const("one", 1.0), mask_3d]), g.const("m", -1e9)])
            masked = g.op("Add", [g.op("Mul", [x, mask_3d]), padded], "max_in")
            pooled.append(g.op("ReduceMax", [masked], "max_pool", axes=[1], keepdims=0))
        elif mode == "pooling_mode_mean_tokens":
            pooled.append(g.op("Div", [summed, counted], "mean_pool"))
        else:  # mean_sqrt_len
            pooled.append(g.op("Div", [summed, g.op("Sqrt", [counted])], "mean_sqrt_pool"))
    embedding = pooled[0] if len(pooled) == 1 else g.op("Concat", pooled, "pooled", axis=1)

    if spec.normalize:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        norm = g.op("ReduceL2", [embedding], "norm", axes=[1], keepdims=1)  # attr until 18
        norm = g.op("Max", [norm, g.const("eps", 1e-12)], "norm_clamped")
        embedding = g.op("Div", [embedding, norm], "normalized")
    g.nodes.append(helper.make_node("Identity", [embedding], ["sentence_embedding"]))

    batch_seq = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "sentence_transformer",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, batch_seq)
            for n in (ids, mask, types)
        ],
        [
            helper.make_tensor_value_info(
                "sentence_embedding", TensorProto.FLOAT, ["batch", spec.dimensions]
            )
        ],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if fused:
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="ragstream")
    model.ir_version = 8  # what ONNX Runtime >= 1.15 reads; opset 17 needs >= 8
    return model


def load_weights(model_dir: Path) -> dict[str, npt.NDArray[Any]]:
    """The model's safetensors weights as numpy arrays (no torch)."""
    from safetensors.numpy import load_file

    return dict(load_file(str(model_dir / "model.safetensors")))


def build_model(model_dir: Path, *, fused: bool = True) -> tuple[ModelSpec, onnx.ModelProto]:
    """The spec and ONNX graph of the sentence-transformers model in ``model_dir``."""
    weights = load_weights(model_dir)
    spec = read_spec(model_dir, set(weights))
    return spec, build_graph(spec, weights, fused=fused)
