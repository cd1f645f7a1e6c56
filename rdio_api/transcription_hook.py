"""Wire the transcription side into the API process: publisher, sweeper, readiness, metrics."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Gauge, Histogram
from sqlalchemy import select

from rdio_api.state import AppState
from rdio_core.models import JobStatus, TranscriptionJob
from rdio_tasks import jobs

JOBS = Gauge("rdio_transcription_jobs", "Transcription jobs by status", ["status"])
QUEUE_DEPTH = Gauge("rdio_transcription_queue_depth", "Messages waiting or reserved in the gpu queue")
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


def install(state: AppState) -> Callable[[], None] | None:
    if not state.settings.transcription.enabled:
        return None
    from rdio_tasks.celery_app import app as celery_app
    from rdio_tasks.dispatch import Dispatcher

    dispatcher = Dispatcher(state.settings, state.factory, celery_app)
    dispatcher.start()
    state.writer.on_jobs_committed = dispatcher.publish_later
    state.extras["dispatcher"] = dispatcher
    state.extras["broker_probe"] = dispatcher.broker_probe
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
        depth = dispatcher.broker_depth()
        if depth is not None:
            QUEUE_DEPTH.set(depth)

    state.extras["metrics_refresh"] = refresh
    return dispatcher.stop
