"""Prometheus metrics of the HTTP API (served with every other metric at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "ragstream_api_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ("route", "method", "status"),
)
REQUEST_SECONDS = Histogram(
    "ragstream_api_request_seconds",
    "Time to answer one HTTP request, by route template.",
    ("route",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UPLOADS = Counter(
    "ragstream_api_uploads_total",
    "Documents received through the API, by outcome (created, existing).",
    ("outcome",),
)
WEBHOOKS = Counter(
    "ragstream_api_webhooks_total",
    "LlamaParse webhooks received, by outcome (completed, duplicate, rejected...).",
    ("outcome",),
)
