"""ONNX Runtime against torch on the same texts, side by side: agreement and speed.

    python -m ragstream.embedding.onnx_compare --threads 2 --tokens 256 --texts 64

Embeds ``--texts`` chunks of exactly ``--tokens`` tokens (specials included)
with sentence-transformers (torch, fp32) and with :class:`OnnxEmbedder`, both
at ``--threads`` intra-op threads, alternating the two for ``--rounds`` rounds
after one warm-up each, and prints the lowest cosine between their vectors and
the median wall and CPU time of each (needs both the ``minilm`` and the ``onnx``
extras). On a busy machine the CPU times are the steadier comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def chunks(count: int, tokens: int) -> list[str]:
    """``count`` distinct texts of ``tokens`` model tokens each, specials included."""
    from ragstream.chunking import count_minilm_tokens

    sentence = (
        "retrieval augmented generation splits documents into chunks embeds each one and "
        "stores vectors so that questions find the closest passages kafka partitions keep "
        "order while consumers commit offsets after the database transaction succeeds"
    )
    words = sentence.split(" ")
    texts = []
    for i in range(count):
        picked: list[str] = []
        j = i
        while count_minilm_tokens(" ".join(picked)) < tokens - 2:
            picked.append(words[j % len(words)])
            j += i + 1
        while count_minilm_tokens(" ".join(picked)) > tokens - 2:
            picked.pop()
        texts.append(" ".join(picked))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--plain", action="store_true", help="plain ONNX attention, not fused")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from ragstream.embedding.minilm import model_directory
    from ragstream.embedding.onnx_runtime import OnnxEmbedder

    torch.set_num_threads(args.threads)
    texts = chunks(args.texts, args.tokens)
    st = SentenceTransformer(str(model_directory()), device="cpu")
    with tempfile.TemporaryDirectory() as cache:
        onnx = OnnxEmbedder(
            batch_size=args.batch_size,
            threads=args.threads,
            cache_dir=Path(cache),
            fused=not args.plain,
        )

        def run_torch() -> np.ndarray:
            with torch.inference_mode():
                return np.asarray(
                    st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
                )

        def run_onnx() -> np.ndarray:
            return onnx.embed_array(texts)

        times: dict[str, list[float]] = {"torch": [], "onnx": []}
        cpu: dict[str, list[float]] = {"torch": [], "onnx": []}
        outputs = {"torch": run_torch(), "onnx": run_onnx()}  # warm-up
        for _ in range(args.rounds):
            for name, run in (("torch", run_torch), ("onnx", run_onnx)):
                started, cpu_started = time.perf_counter(), time.process_time()
                outputs[name] = run()
                times[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
    a, b = outputs["torch"].astype(np.float64), outputs["onnx"].astype(np.float64)
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    print(
        json.dumps(
            {
                "texts": args.texts,
                "tokens": args.tokens,
                "threads": args.threads,
                "batch_size": args.batch_size,
                "fused_attention": not args.plain,
                "cosine_min": round(float(cosines.min()), 8),
                "max_abs_diff": float(np.abs(a - b).max()),
                "torch_s": round(median["torch"], 3),
                "onnx_s": round(median["onnx"], 3),
                "torch_texts_per_s": round(args.texts / median["torch"], 1),
                "onnx_texts_per_s": round(args.texts / median["onnx"], 1),
                "speedup_onnx_vs_torch": round(median["torch"] / median["onnx"], 2),
                # CPU seconds of this process: steadier than wall time on a busy machine.
                "torch_cpu_s": round(median_cpu["torch"], 3),
                "onnx_cpu_s": round(median_cpu["onnx"], 3),
                "cpu_ratio_torch_over_onnx": round(median_cpu["torch"] / median_cpu["onnx"], 2),
                "load_average_1m": round(os.getloadavg()[0], 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
