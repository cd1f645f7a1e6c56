"""Transcription job state transitions, shared by the worker task, the sweeper and the API.

Every transition is a single compare-and-set UPDATE, so duplicate messages (a sweeper republish, a
Redis redelivery, a retried publish) can never transcribe a call twice or overwrite a result. It
lives in the shared core because the API (job creation at ingest, manual jobs, the sweeper) and the
worker (claims, results) move the same rows; :func:`job_row` is the one builder of a new job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import search
from rdio_core.calls import StoredCall
from rdio_core.models import Call, Event, EventKind, JobStatus, TranscriptionJob, utcnow
from rdio_core.outbox import lease
from rdio_core.outbox.lease import ClaimOutcome, LeasedTable, changed

log = logging.getLogger(__name__)

FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.SKIPPED)
#: Jobs waiting for a worker: the backlog that ``transcription.defer_backlog_depth`` bounds.
WAITING = (JobStatus.PENDING, JobStatus.QUEUED)


@dataclass(frozen=True)
class Claim:
    """Outcome of trying to claim a job."""

    outcome: ClaimOutcome
    job: TranscriptionJob | None = None
    call: Call | None = None
    retry_in: float = 0.0


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Waiting for a worker, or processing under a lease that lapsed (its worker is gone)."""
    return or_(
        TranscriptionJob.status.in_(WAITING),
        and_(TranscriptionJob.status == JobStatus.PROCESSING, TranscriptionJob.lease_expires_at < now),
    )


LEASED = LeasedTable(
    model=TranscriptionJob,
    claimable=_claimable,
    is_final=lambda job: job.status in FINAL,
    on_claim=lambda now: {"status": JobStatus.PROCESSING, "started_at": now},
    on_give_up=lambda now: {"status": JobStatus.FAILED, "finished_at": now},
)


def celery_priority(job_priority: int) -> int:
    """Job priority 1 (most urgent) .. 5 onto Redis priority steps 0 .. 8 (0 is served first)."""
    return (min(5, max(1, job_priority)) - 1) * 2


def claim(
    factory: sessionmaker[Session], job_id: int, worker: str, lease_seconds: int, max_attempts: int
) -> Claim:
    """Take the job for this worker under a lease: pending/queued, or processing with a lapsed lease."""
    now = utcnow()
    with factory() as session:
        outcome, job = lease.claim(
            session,
            replace(LEASED, on_claim=lambda now: {**LEASED.on_claim(now), "worker": worker}),
            job_id,
            lease_seconds,
            max_attempts,
            now,
            ended=_ended(job_id),
        )
        if outcome is ClaimOutcome.CLAIMED:
            return Claim(outcome, job, session.get(Call, job.call_id))
        if outcome is ClaimOutcome.BUSY:
            return Claim(outcome, job, retry_in=(job.lease_expires_at - now).total_seconds() + 1)
        return Claim(outcome, job)


def _update_owned(
    factory: sessionmaker[Session],
    job_id: int,
    worker: str,
    then: Callable[[Session], None] | None = None,
    **values: Any,
) -> bool:
    """Apply ``values`` only while ``worker`` still holds the job (processing under its lease);
    ``then`` runs in the same transaction when it did."""
    with factory() as session:
        done = changed(
            session,
            update(TranscriptionJob)
            .where(
                TranscriptionJob.id == job_id,
                TranscriptionJob.status == JobStatus.PROCESSING,
                TranscriptionJob.worker == worker,
            )
            .values(**values, lease_expires_at=None, updated_at=utcnow()),
        )
        if done and then is not None:
            then(session)
        session.commit()
    return bool(done)


#: What storing a transcript adds to its transaction beyond the job row and the search document
#: (rdio_core.pipeline: the alert rules its text matches). Gets the session, the call, the text.
AfterTranscript = Callable[[Session, StoredCall, str], None]


def _ended(
    job_id: int, transcript: str | None = None, reindex: bool = False, after: AfterTranscript | None = None
) -> Callable[[Session], None]:
    """What ending a job adds to its transaction: the live feed's event and, for a completed job,
    the call's search document with the new transcript (a re-transcription replaces the old) and
    whatever ``after`` adds."""

    def record(session: Session) -> None:
        call_id = session.execute(
            select(TranscriptionJob.call_id).where(TranscriptionJob.id == job_id)
        ).scalar_one()
        session.add(
            Event(kind=EventKind.TRANSCRIPT_UPDATED, call_id=call_id, job_id=job_id, created_at=utcnow())
        )
        if not reindex:
            return
        call = StoredCall.model_validate(session.get_one(Call, call_id))
        search.index_call(session, call_id, search.call_document(call, transcript))
        if after is not None and transcript:
            after(session, call, transcript)

    return record


def complete(
    factory: sessionmaker[Session],
    job_id: int,
    worker: str,
    values: dict[str, Any],
    after: AfterTranscript | None = None,
) -> bool:
    """Store the result in one transaction, only while this worker still owns the job; ``after``
    runs in that transaction (see :data:`AfterTranscript`)."""
    done = _update_owned(
        factory,
        job_id,
        worker,
        _ended(job_id, values.get("text"), reindex=True, after=after),
        **values,
        status=JobStatus.COMPLETED,
        error=None,
        finished_at=utcnow(),
    )
    if not done:
        log.warning("job %s: result discarded, this worker (%s) no longer owns it", job_id, worker)
    return done


def finish(factory: sessionmaker[Session], job_id: int, worker: str, status: JobStatus, reason: str) -> bool:
    """End the job as failed or skipped with a reason (no retry)."""
    return _update_owned(
        factory, job_id, worker, _ended(job_id), status=status, error=reason[:2000], finished_at=utcnow()
    )


def record_duration(
    factory: sessionmaker[Session], call: Call, decoded_seconds: float, tolerance: float
) -> bool:
    """Store the decoded length on the call when the upload's figure (a header's claim, or none)
    is off by more than ``tolerance`` (codec padding: MP3 decodes 0.14-0.21 s longer than LAME's
    header says). True when it changed."""
    stored = call.duration_seconds
    if stored is not None and abs(stored - decoded_seconds) <= tolerance:
        return False
    with factory() as session:
        session.execute(
            update(Call).where(Call.id == call.id).values(duration_seconds=round(decoded_seconds, 3))
        )
        session.commit()
    log.info("call %s: duration %.3fs decoded (the upload stored %s)", call.id, decoded_seconds, stored)
    return True


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


def job_row(
    call_id: int,
    priority: int,
    status: JobStatus = JobStatus.PENDING,
    reason: str | None = None,
    model: str | None = None,
    language: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The column values of a new job: ``pending`` to be published, or already ``skipped`` with
    its ``reason`` (a talkgroup excluded, a call too short). Ingest inserts these in bulk, one
    statement per batch; :func:`create_job` makes one ORM row of it."""
    now = now or utcnow()
    return {
        "call_id": call_id,
        "status": status,
        "priority": priority,
        "model": model,
        "language": language,
        "attempts": 0,
        "error": reason,
        "created_at": now,
        "updated_at": now,
        "finished_at": now if status in FINAL else None,
    }


def create_job(
    session: Session, call_id: int, priority: int, model: str | None = None, language: str | None = None
) -> TranscriptionJob:
    """Add a pending job for ``call_id`` (a manual re-transcription) and flush it to get its id."""
    job = TranscriptionJob(**job_row(call_id, priority, model=model, language=language))
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


def backlog(session: Session) -> int:
    """Jobs waiting for a worker (pending + queued); deferred ones are not counted."""
    return session.execute(
        select(func.count()).select_from(TranscriptionJob).where(TranscriptionJob.status.in_(WAITING))
    ).scalar_one()


def deferral_reason(waiting: int, depth: int) -> str:
    """What a deferred job's card says (the job's ``error`` until it is released)."""
    return f"{waiting} jobs were waiting (defer_backlog_depth {depth}); transcribed when the queue drains"


def release_deferred(
    factory: sessionmaker[Session],
    depth: int | None,
    limit: int = 200,
    unless: ColumnElement[bool] | None = None,
) -> list[tuple[int, int]]:
    """Make deferred jobs pending again while the backlog is under ``depth`` (all of them when
    deferral is off), most urgent then oldest first; returns (job id, priority) of each to publish.
    Jobs matching ``unless`` stay (held backfill jobs, released by their own rule).

    Each row moves by compare-and-set, so two sweepers never release the same job twice."""
    with factory() as session:
        room = limit if depth is None else min(limit, depth - backlog(session))
        if room <= 0:
            return []
        released = release_where(session, room, ~unless if unless is not None else None)
        session.commit()
    return released


def release_where(
    session: Session, room: int, where: ColumnElement[bool] | None = None
) -> list[tuple[int, int]]:
    """Up to ``room`` deferred jobs (matching ``where``), most urgent then oldest first, made
    pending by compare-and-set, so two releasers never release one job twice; returns (job id,
    priority) of each to publish. The caller commits."""
    deferred = TranscriptionJob.status == JobStatus.DEFERRED
    picked = session.execute(
        select(TranscriptionJob.id, TranscriptionJob.priority)
        .where(deferred if where is None else and_(deferred, where))
        .order_by(TranscriptionJob.priority, TranscriptionJob.id)
        .limit(room)
    ).all()
    released: list[tuple[int, int]] = []
    now = utcnow()
    for job_id, priority in picked:
        if changed(
            session,
            update(TranscriptionJob)
            .where(TranscriptionJob.id == job_id, TranscriptionJob.status == JobStatus.DEFERRED)
            .values(status=JobStatus.PENDING, error=None, updated_at=now),
        ):
            released.append((job_id, priority))
    return released


def waiting_by_priority(
    session: Session, restrict: Callable[[Select], Select] | None = None
) -> dict[int, dict[str, int]]:
    """Unfinished jobs (pending, deferred, queued, processing) per priority and status; ``restrict``
    narrows the query (an API key's systems)."""
    stmt = (
        select(TranscriptionJob.priority, TranscriptionJob.status, func.count())
        .where(TranscriptionJob.status.not_in(FINAL))
        .group_by(TranscriptionJob.priority, TranscriptionJob.status)
    )
    rows = session.execute(restrict(stmt) if restrict else stmt).all()
    out: dict[int, dict[str, int]] = {}
    for priority, status, count in rows:
        out.setdefault(priority, {})[status] = count
    return dict(sorted(out.items()))
