"""Prometheus metrics exposed at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

UPLOADS = Counter("rdio_uploads_total", "Call uploads by result", ["result"])
UPLOAD_SECONDS = Histogram(
    "rdio_upload_seconds",
    "Time to accept an upload (read, store durably, commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# The transcription health conditions (rdio_api.transcription_health), set at each scrape from the
# database and the worker registry; deploy/prometheus/alerts.yml alerts on these names.
BACKLOG = Gauge("rdio_transcription_backlog", "Jobs waiting for a worker (pending + queued)")
SUCCESS_RATIO = Gauge(
    "rdio_transcription_success_ratio",
    "Completed / (completed + failed) jobs over health.window_seconds (NaN: none finished)",
)
PROCESSING_RATIO_P95 = Gauge(
    "rdio_transcription_processing_ratio_p95",
    "p95 processing seconds per audio second over health.window_seconds (NaN: none completed)",
)
WORKERS_OFFLINE = Gauge(
    "rdio_workers_offline", "Registered workers silent past health.worker_offline_seconds"
)
DISK_FREE = Gauge("rdio_disk_free_bytes", "Free bytes on the data/audio filesystem (the smaller)")
HEALTH_OK = Gauge("rdio_health_check_ok", "1 when the transcription health check passes", ["check"])
WORKER_HEARTBEAT = Gauge(
    "rdio_worker_last_heartbeat_timestamp_seconds",
    "Unix time of each running worker's last heartbeat",
    ["worker", "host"],
)
WORKER_UP = Gauge("rdio_worker_up", "1 while a worker beats (heard within 3 heartbeats)", ["worker"])
WORKER_CURRENT_JOBS = Gauge("rdio_worker_current_jobs", "Jobs a worker is running", ["worker"])
WORKER_JOBS_DONE = Gauge("rdio_worker_jobs_done", "Jobs a worker process has finished", ["worker"])
WORKER_FAILURES = Gauge("rdio_worker_failures", "Jobs a worker process failed or handed back", ["worker"])

# The upload spool (rdio_api.spool): calls accepted while the database was away.
SPOOLED = Counter("rdio_spooled_calls_total", "Uploads spooled because the database did not answer")
SPOOL_DRAINED = Counter("rdio_spool_drained_calls_total", "Spooled calls committed to the database")
SPOOL_CALLS = Gauge("rdio_spool_calls", "Calls in the spool, waiting for the database")
SPOOL_BYTES = Gauge("rdio_spool_bytes", "Audio bytes of the calls in the spool")
SPOOL_OLDEST_SECONDS = Gauge("rdio_spool_oldest_seconds", "Age of the oldest spooled call (0: none)")
SPOOL_DRAIN_SECONDS = Gauge("rdio_spool_last_drain_seconds", "How long the last drain of the spool took")

# rdio-api up's helper processes (rdio_api.helper_status): restarted with backoff, never fatal.
HELPER_UP = Gauge("rdio_helper_up", "1 while an `rdio-api up` helper process runs", ["helper"])
HELPER_RESTARTS = Gauge("rdio_helper_restarts", "Times `rdio-api up` started a helper again", ["helper"])
