"""The API process's outbox, wired once at start-up: the broker, the publishers and sweepers of
transcription jobs, tone analysis and alert deliveries (rdio_core.pipeline), and what /ready and
/metrics read of them.

Without a ``broker_url`` nothing is published, and never to a guessed broker: publishing to
"whatever Redis answers on 127.0.0.1:6379" handed calls to someone else's queue on a shared host.
Jobs are still created as ``pending``, calls keep ``analyzed_at`` NULL and deliveries stay
``pending``, for a system with a broker (``rdio-api sweep``; ``rdio-api up`` runs one embedded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Gauge, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from rdio_api.state import AppState
from rdio_core import jobs
from rdio_core.models import JobStatus, TranscriptionJob
from rdio_core.pipeline import Pipeline
from rdio_core.settings import Settings

log = logging.getLogger(__name__)

JOBS = Gauge("rdio_transcription_jobs", "Transcription jobs by status", ["status"])
QUEUE_DEPTH = Gauge("rdio_transcription_queue_depth", "Messages waiting in the gpu queue for a worker")
QUEUE_RESERVED = Gauge(
    "rdio_transcription_queue_reserved",
    "gpu queue messages a worker took and has not acknowledged (running, prefetched, retry "
    "countdowns, or a dead worker's until the broker's visibility timeout hands them back)",
)
PROCESSING_SECONDS = Histogram(
    "rdio_transcription_processing_seconds",
    "Worker processing time per completed job",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
REAL_TIME_FACTOR = Histogram(
    "rdio_transcription_real_time_factor",
    "Processing seconds per audio second per completed job",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
)


def build(
    settings: Settings, factory: sessionmaker[Session], current: Callable[[], Settings]
) -> Pipeline | None:
    """The process's pipeline, not started yet (the call writer takes it in its constructor); None
    without a broker. ``current`` returns the running settings (reloaded live)."""
    if not settings.broker_url:
        if settings.transcription.enabled:
            log.warning(
                "transcription: broker_url is not set, so no job is published: jobs stay pending until "
                "a system with a broker publishes them (`rdio-api sweep`); `rdio-api up` runs one embedded"
            )
        if settings.tones.enabled:
            log.warning("tones: broker_url is not set, so calls are not analysed for dispatch tones")
        if settings.alerts.rules:
            log.warning("alerts: broker_url is not set, so deliveries stay pending (no alerts worker)")
        return None
    from rdio_tasks.broker import connect

    return Pipeline(connect(settings.broker_url), factory, current)


def install(state: AppState) -> Callable[[], None] | None:
    """Start the pipeline's publishers and sweepers, and what /ready and /metrics read of them."""
    transcription = state.settings.transcription.enabled
    pipeline = state.pipeline
    if transcription:
        state.broker_probe = pipeline.jobs.broker_probe if pipeline is not None else lambda: "not configured"
        state.metrics_refresh = _refresher(state, pipeline)
    if pipeline is None:
        return None
    pipeline.start(transcription=transcription)
    return pipeline.stop


def _refresher(state: AppState, pipeline: Pipeline | None) -> Callable[[], None]:
    """The /metrics refresh: job gauges from the database, queue depth from the broker if any."""
    last_seen = {"id": 0}

    def refresh() -> None:
        with state.factory() as session:
            counts = jobs.status_counts(session)
            # Feed histograms with jobs completed since the last scrape (workers live elsewhere).
            rows = session.execute(
                select(TranscriptionJob.id, TranscriptionJob.processing_ms, TranscriptionJob.real_time_factor)
                .where(TranscriptionJob.status == JobStatus.COMPLETED, TranscriptionJob.id > last_seen["id"])
                .order_by(TranscriptionJob.id)
            ).all()
        for status in JobStatus:
            JOBS.labels(status=status.value).set(counts.get(status.value, 0))
        for job_id, ms, rtf in rows:
            last_seen["id"] = max(last_seen["id"], job_id)
            if ms is not None:
                PROCESSING_SECONDS.observe(ms / 1000)
            if rtf is not None:
                REAL_TIME_FACTOR.observe(rtf)
        broker = pipeline.jobs.broker_counts() if pipeline is not None else None
        if broker is not None:
            QUEUE_DEPTH.set(broker.waiting)
            QUEUE_RESERVED.set(broker.reserved)

    return refresh
