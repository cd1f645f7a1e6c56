"""The design plan's alert conditions, measured: queue depth, success rate, processing time against
audio time, offline workers, free disk. One measurement feeds ``GET /api/health/transcription``, the
gauges on ``/metrics`` and so the rules in ``deploy/prometheus/alerts.yml``.

Everything is read from the database (jobs and the worker registry) and the filesystem: no broker
round trip, no worker ping, so a probe costs a few indexed queries (~ms) even with the broker down.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rdio_api import metrics
from rdio_api.schemas import HealthCheck, TranscriptionHealth, WorkerOut
from rdio_api.state import AppState
from rdio_core import jobs, workers
from rdio_core.models import JobStatus, TranscriptionJob, utcnow
from rdio_core.settings import Settings

#: p95 is taken over at most this many of the window's newest jobs (one query, ~100 KB of floats).
P95_SAMPLE = 10_000


def fresh_seconds(settings: Settings) -> float:
    """A worker heard within three heartbeats is live (two beats may be lost before its leases)."""
    return 3 * settings.transcription.heartbeat_seconds


WorkerState = Literal["live", "late", "offline", "stopped"]


def worker_state(worker: workers.Worker, now: datetime, settings: Settings) -> WorkerState:
    if worker.stopped_at is not None:
        return "stopped"
    if workers.is_live(worker, now, fresh_seconds(settings)):
        return "live"
    if workers.is_offline(worker, now, settings.health.worker_offline_seconds):
        return "offline"
    return "late"


def worker_out(worker: workers.Worker, now: datetime, settings: Settings) -> WorkerOut:
    return WorkerOut(
        name=worker.name,
        host=worker.host,
        pid=worker.pid,
        queues=list(worker.queues or []),
        model=worker.model,
        device=worker.device,
        started_at=worker.started_at,
        last_heartbeat_at=worker.last_heartbeat_at,
        stopped_at=worker.stopped_at,
        state=worker_state(worker, now, settings),
        current_jobs=[int(j) for j in worker.current_jobs or []],
        jobs_done=worker.jobs_done,
        failures=worker.failures,
    )


def _p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def free_bytes(state: AppState) -> int:
    """Free space where the system writes: the audio directory's and the data directory's
    filesystems (the database and Redis's AOF live there), whichever has less."""
    free = state.store.free_bytes()
    with contextlib.suppress(OSError):  # no data dir (audio_dir elsewhere, nothing else written)
        free = min(free, shutil.disk_usage(state.settings.data_dir).free)
    return free


def measure(state: AppState, session: Session) -> tuple[TranscriptionHealth, list[workers.Worker]]:
    """Every condition against its line in ``health.*`` (free disk: ``storage.min_free_bytes``)."""
    settings = state.settings
    lines = settings.health
    now = utcnow()
    since = now - timedelta(seconds=lines.window_seconds)
    backlog = jobs.backlog(session)
    ended = dict(
        session.execute(
            select(TranscriptionJob.status, func.count())
            .where(
                TranscriptionJob.status.in_([JobStatus.COMPLETED, JobStatus.FAILED]),
                TranscriptionJob.finished_at >= since,
            )
            .group_by(TranscriptionJob.status)
        )
        .tuples()
        .all()
    )
    completed, failed = ended.get(JobStatus.COMPLETED, 0), ended.get(JobStatus.FAILED, 0)
    success = completed / (completed + failed) if completed + failed else None
    ratios = [
        float(r)
        for r in session.execute(
            select(TranscriptionJob.real_time_factor)
            .where(
                TranscriptionJob.status == JobStatus.COMPLETED,
                TranscriptionJob.finished_at >= since,
                TranscriptionJob.real_time_factor.is_not(None),
            )
            .order_by(TranscriptionJob.finished_at.desc())
            .limit(P95_SAMPLE)
        ).scalars()
        if r is not None
    ]
    p95 = _p95(ratios)
    registry = workers.list_workers(session)
    offline = [w.name for w in registry if workers.is_offline(w, now, lines.worker_offline_seconds)]
    disk = free_bytes(state)
    min_free = settings.storage.min_free_bytes
    window = f"last {lines.window_seconds:g} s"
    checks = {
        "queue_depth": HealthCheck(
            ok=backlog <= lines.max_queue_depth,
            value=backlog,
            threshold=lines.max_queue_depth,
            detail=f"{backlog} jobs waiting for a worker (pending + queued)",
        ),
        "success_rate": HealthCheck(
            ok=success is None or success >= lines.min_success_rate,
            value=None if success is None else round(success, 4),
            threshold=lines.min_success_rate,
            detail=f"{completed} completed, {failed} failed, {window}",
        ),
        "processing_ratio": HealthCheck(
            ok=p95 is None or p95 <= lines.max_processing_ratio,
            value=None if p95 is None else round(p95, 4),
            threshold=lines.max_processing_ratio,
            detail=f"p95 processing time / audio time over {len(ratios)} completed jobs, {window}",
        ),
        "workers_offline": HealthCheck(
            ok=not offline,
            value=len(offline),
            threshold=lines.worker_offline_seconds,
            detail=(
                f"silent > {lines.worker_offline_seconds:g} s: {', '.join(offline)}"
                if offline
                else f"{len(registry)} registered, none silent > {lines.worker_offline_seconds:g} s"
            ),
        ),
        "disk_free_bytes": HealthCheck(
            ok=min_free <= 0 or disk >= min_free,
            value=disk,
            threshold=min_free,
            detail=f"{disk / 1e9:.2f} GB free (storage.min_free_bytes {min_free / 1e9:g} GB)",
        ),
    }
    if state.spool is not None:
        spooled, age = state.spool.pending(), state.spool.oldest_age()
        checks["spool"] = HealthCheck(
            ok=spooled == 0,
            value=spooled,
            threshold=settings.spool.max_calls,
            detail=f"{state.spool.describe()}; oldest age {0.0 if age is None else round(age, 1)} s",
        )
    healthy = all(c.ok for c in checks.values())
    return TranscriptionHealth(status="healthy" if healthy else "degraded", checks=checks), registry


def export(state: AppState, session: Session) -> TranscriptionHealth:
    """Measure and set the /metrics gauges (at each scrape)."""
    report, registry = measure(state, session)
    now = utcnow()
    checks = report.checks
    metrics.BACKLOG.set(checks["queue_depth"].value or 0)
    metrics.SUCCESS_RATIO.set(_nan(checks["success_rate"].value))
    metrics.PROCESSING_RATIO_P95.set(_nan(checks["processing_ratio"].value))
    metrics.WORKERS_OFFLINE.set(checks["workers_offline"].value or 0)
    metrics.DISK_FREE.set(checks["disk_free_bytes"].value or 0)
    for name, check in checks.items():
        metrics.HEALTH_OK.labels(check=name).set(1 if check.ok else 0)
    per_worker = (
        metrics.WORKER_HEARTBEAT,
        metrics.WORKER_UP,
        metrics.WORKER_CURRENT_JOBS,
        metrics.WORKER_JOBS_DONE,
        metrics.WORKER_FAILURES,
    )
    for gauge in per_worker:  # workers come and go: no stale label sets
        gauge.clear()
    fresh = fresh_seconds(state.settings)
    for w in registry:
        if w.stopped_at is not None:
            continue
        beat = w.last_heartbeat_at.replace(tzinfo=None)
        metrics.WORKER_HEARTBEAT.labels(worker=w.name, host=w.host).set(
            (beat - datetime(1970, 1, 1)).total_seconds()
        )
        metrics.WORKER_UP.labels(worker=w.name).set(1 if workers.is_live(w, now, fresh) else 0)
        metrics.WORKER_CURRENT_JOBS.labels(worker=w.name).set(len(w.current_jobs or []))
        metrics.WORKER_JOBS_DONE.labels(worker=w.name).set(w.jobs_done)
        metrics.WORKER_FAILURES.labels(worker=w.name).set(w.failures)
    return report


def _nan(value: float | None) -> float:
    """Prometheus has no null: NaN compares false, so a rule on it stays quiet."""
    return math.nan if value is None else value
