"""Prometheus metrics exposed at /metrics."""

from prometheus_client import Counter, Histogram

UPLOADS = Counter("rdio_uploads_total", "Call uploads by result", ["result"])
UPLOAD_SECONDS = Histogram(
    "rdio_upload_seconds",
    "Time to accept an upload (read, store durably, commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
