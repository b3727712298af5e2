"""``ragstream bench``: throughput, latency and memory beside the limits and a peer."""

from ragstream.benchmark.bench import BenchOptions, run_bench
from ragstream.benchmark.report import REQUIRED_KEYS, markdown

__all__ = ["REQUIRED_KEYS", "BenchOptions", "markdown", "run_bench"]
