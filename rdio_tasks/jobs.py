"""Transcription job state transitions, shared by the worker task, the sweeper and the API.

Every transition is a single compare-and-set UPDATE, so duplicate messages (a sweeper republish, a
Redis redelivery, a retried publish) can never transcribe a call twice or overwrite a result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from rdio_core.models import Call, JobStatus, TranscriptionJob, utcnow

log = logging.getLogger(__name__)

FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.SKIPPED)


@dataclass(frozen=True)
class Claim:
    """Outcome of trying to claim a job."""

    outcome: str  # claimed | final | busy | gave_up | missing
    job: TranscriptionJob | None = None
    call: Call | None = None
    retry_in: float = 0.0


def celery_priority(job_priority: int) -> int:
    """Job priority 1 (most urgent) .. 5 onto Redis priority steps 0 .. 8 (0 is served first)."""
    return (min(5, max(1, job_priority)) - 1) * 2


def claim(
    factory: sessionmaker[Session], job_id: int, worker: str, lease_seconds: int, max_attempts: int
) -> Claim:
    """Take the job for this worker under a lease: pending/queued, or processing with a lapsed lease."""
    now = utcnow()
    with factory() as session:
        claimable = or_(
            TranscriptionJob.status.in_([JobStatus.PENDING, JobStatus.QUEUED]),
            and_(TranscriptionJob.status == JobStatus.PROCESSING, TranscriptionJob.lease_expires_at < now),
        )
        stmt = (
            update(TranscriptionJob)
            .where(TranscriptionJob.id == job_id, claimable, TranscriptionJob.attempts < max_attempts)
            .values(
                status=JobStatus.PROCESSING,
                attempts=TranscriptionJob.attempts + 1,
                worker=worker,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=now,
                updated_at=now,
            )
        )
        claimed = session.execute(stmt).rowcount == 1
        session.commit()
        job = session.get(TranscriptionJob, job_id)
        if job is None:
            return Claim("missing")
        if claimed:
            call = session.get(Call, job.call_id)
            return Claim("claimed", job, call)
        if job.status in FINAL:
            return Claim("final", job)
        if job.status == JobStatus.PROCESSING and job.lease_expires_at and job.lease_expires_at >= now:
            return Claim("busy", job, retry_in=(job.lease_expires_at - now).total_seconds() + 1)
        # Claimable but out of attempts: a poison call. End it instead of looping forever.
        gave_up = session.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == job_id, claimable)
            .values(
                status=JobStatus.FAILED,
                error=f"gave up after {job.attempts} attempts; last error: {job.error or 'worker lost'}",
                finished_at=now,
                lease_expires_at=None,
                updated_at=now,
            )
        ).rowcount
        session.commit()
        return Claim("gave_up" if gave_up else "final", job)


def _update_owned(factory: sessionmaker[Session], job_id: int, worker: str, **values: Any) -> bool:
    """Apply ``values`` only while ``worker`` still holds the job (processing under its lease)."""
    with factory() as session:
        done = session.execute(
            update(TranscriptionJob)
            .where(
                TranscriptionJob.id == job_id,
                TranscriptionJob.status == JobStatus.PROCESSING,
                TranscriptionJob.worker == worker,
            )
            .values(**values, lease_expires_at=None, updated_at=utcnow())
        ).rowcount
        session.commit()
    return bool(done)


def complete(factory: sessionmaker[Session], job_id: int, worker: str, values: dict[str, Any]) -> bool:
    """Store the result in one transaction, only while this worker still owns the job."""
    done = _update_owned(
        factory, job_id, worker, **values, status=JobStatus.COMPLETED, error=None, finished_at=utcnow()
    )
    if not done:
        log.warning("job %s: result discarded, this worker (%s) no longer owns it", job_id, worker)
    return done


def finish(factory: sessionmaker[Session], job_id: int, worker: str, status: JobStatus, reason: str) -> bool:
    """End the job as failed or skipped with a reason (no retry)."""
    return _update_owned(factory, job_id, worker, status=status, error=reason[:2000], finished_at=utcnow())


def release(factory: sessionmaker[Session], job_id: int, worker: str, error: str) -> None:
    """Hand the job back (transient failure) so the retry message, or the sweeper, can claim it."""
    _update_owned(factory, job_id, worker, status=JobStatus.QUEUED, error=error[:2000])


def mark_queued(factory: sessionmaker[Session], job_id: int, task_id: str) -> None:
    """Record a publish. Only a pending/queued job moves: a worker may have claimed it already."""
    now = utcnow()
    with factory() as session:
        session.execute(
            update(TranscriptionJob)
            .where(
                TranscriptionJob.id == job_id,
                TranscriptionJob.status.in_([JobStatus.PENDING, JobStatus.QUEUED]),
            )
            .values(status=JobStatus.QUEUED, task_id=task_id, queued_at=now, updated_at=now)
        )
        session.commit()


def create_job(
    session: Session, call_id: int, priority: int, model: str | None = None, language: str | None = None
) -> TranscriptionJob:
    now = utcnow()
    job = TranscriptionJob(
        call_id=call_id,
        status=JobStatus.PENDING,
        priority=priority,
        model=model,
        language=language,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job


def sweep_candidates(
    session: Session, stale_before: datetime, now: datetime, include_queued: bool, limit: int = 200
) -> list[TranscriptionJob]:
    """Jobs that need (re)publishing: pending too long, lapsed leases, and (optionally) stale queued.

    On PostgreSQL the rows are locked with SKIP LOCKED so several API processes can sweep at once
    without publishing the same job twice; SQLite has a single writer and needs no lock.
    """
    stuck = [
        and_(TranscriptionJob.status == JobStatus.PENDING, TranscriptionJob.updated_at < stale_before),
        and_(TranscriptionJob.status == JobStatus.PROCESSING, TranscriptionJob.lease_expires_at < now),
    ]
    if include_queued:
        stuck.append(
            and_(TranscriptionJob.status == JobStatus.QUEUED, TranscriptionJob.updated_at < stale_before)
        )
    stmt = (
        select(TranscriptionJob)
        .where(or_(*stuck))
        .order_by(TranscriptionJob.priority, TranscriptionJob.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.execute(stmt).scalars())


def status_counts(session: Session) -> dict[str, int]:
    """Number of jobs in each status (statuses with none are absent)."""
    rows = session.execute(select(TranscriptionJob.status, func.count()).group_by(TranscriptionJob.status))
    return {status: count for status, count in rows.all()}
