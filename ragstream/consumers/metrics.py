"""Prometheus metrics of the stage workers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "ragstream_stage_messages_total",
    "Messages handled by a stage, by outcome (processed, dlq).",
    ("stage", "outcome"),
)
STALE_EVENTS = Counter(
    "ragstream_stale_events_total",
    "Events skipped because their job is no longer their document's current job (reprocessed).",
    ("stage",),
)
DEPENDENCY_DOWN = Gauge(
    "ragstream_dependency_down",
    "1 while the stage waits for a dependency (database, broker, topic, embedder), else 0.",
    ("stage",),
)
RETRIES = Counter(
    "ragstream_stage_retries_total", "Batches retried after a retryable error.", ("stage",)
)
CONSUMER_REBUILDS = Counter(
    "ragstream_consumer_rebuilds_total",
    "Consumers rebuilt because they read nothing while their partitions held messages.",
    ("stage",),
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

# --- the monitor ------------------------------------------------------------
DOCUMENTS = Gauge(
    "ragstream_documents", "Documents by status, as the database has them.", ("status",)
)
ALERTS = Counter(
    "ragstream_alerts_total", "Alerts raised by the monitor (opened, not repeats).", ("kind",)
)
ALERTS_OPEN = Gauge("ragstream_alerts_open", "Alerts open now, by kind.", ("kind",))
STAGE_STALLED = Gauge(
    "ragstream_stage_stalled", "1 while a stage has lag and makes no progress.", ("stage",)
)
STAGE_THROUGHPUT = Gauge(
    "ragstream_stage_throughput_per_minute",
    "Messages a stage's group committed per minute over the last window.",
    ("stage",),
)
DLQ_MESSAGES = Gauge("ragstream_dlq_messages", "Records in a stage's DLQ.", ("stage",))
MONITOR_EVENTS = Counter(
    "ragstream_monitor_events_total",
    "Records the monitor read, by source (stage, dlq) and outcome (ok, undecodable).",
    ("source", "outcome"),
)
