"""Wire the transcription side into the API process: publisher, sweeper, readiness, metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Gauge, Histogram
from sqlalchemy import select

from rdio_api.state import AppState
from rdio_core import jobs
from rdio_core.models import JobStatus, TranscriptionJob

if TYPE_CHECKING:
    from rdio_tasks.dispatch import Dispatcher

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


def install(state: AppState) -> Callable[[], None] | None:
    if not state.settings.transcription.enabled:
        return None
    if not state.settings.broker_url:
        # Never a guessed broker: publishing to "whatever Redis answers on 127.0.0.1:6379" handed
        # calls to someone else's queue on a shared host. Jobs are still created, as `pending`.
        log.warning(
            "transcription: broker_url is not set, so no job is published: jobs stay pending until "
            "a system with a broker publishes them (`rdio-api sweep`); `rdio-api up` runs one embedded"
        )
        state.broker_probe = lambda: "not configured"
        state.metrics_refresh = _refresher(state, None)
        return None
    from rdio_tasks.celery_app import app as celery_app
    from rdio_tasks.dispatch import Dispatcher

    dispatcher = Dispatcher(state.settings, state.factory, celery_app)
    dispatcher.start()
    state.writer.on_jobs_committed = dispatcher.publish_later
    state.dispatcher = dispatcher
    state.broker_probe = dispatcher.broker_probe
    state.metrics_refresh = _refresher(state, dispatcher)
    return dispatcher.stop


def _refresher(state: AppState, dispatcher: Dispatcher | None) -> Callable[[], None]:
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
        broker = dispatcher.broker_counts() if dispatcher is not None else None
        if broker is not None:
            QUEUE_DEPTH.set(broker.waiting)
            QUEUE_RESERVED.set(broker.reserved)

    return refresh
