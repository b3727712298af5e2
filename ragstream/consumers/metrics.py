"""Prometheus metrics of the stage workers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "ragstream_stage_messages_total",
    "Messages handled by a stage, by outcome (processed, dlq).",
    ("stage", "outcome"),
)
RETRIES = Counter(
    "ragstream_stage_retries_total", "Batches retried after a retryable error.", ("stage",)
)
BATCH_SECONDS = Histogram(
    "ragstream_stage_batch_seconds",
    "Time to handle one batch, from decode to stored offsets.",
    ("stage",),
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LAG = Gauge(
    "ragstream_consumer_lag",
    "Messages not yet consumed on the partitions this worker owns.",
    ("stage", "partition"),
)
HEARTBEAT_AGE = Gauge(
    "ragstream_worker_heartbeat_age_seconds", "Seconds since the loop last turned.", ("stage",)
)
