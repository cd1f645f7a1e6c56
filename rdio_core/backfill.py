"""Backfill: transcription jobs for historical calls, queued behind live ones and resumable.

A run is identified by what it asks for (time range, system, talkgroup, model, only-missing): asking
again finds the same run and carries on where it stopped, so a re-run after Ctrl-C, a crash or an
API restart never queues a call twice. Calls are taken in id order, 500 per transaction (the job
rows and the run's links commit together, then the jobs are published: the outbox rule, with the
sweeper covering a lost publish), with a short pause between batches so the API's group-commit
writer is never starved: on SQLite a batch holds the one write lock for ~20 ms.

A run's jobs are created ``deferred`` and held: :func:`release` makes at most
``transcription.backfill_slots`` of them pending at a time, when a run queues, when a job ends (the
worker) and on each sweep. With all 500 jobs of a run in the broker, a worker's threads all held
backfill calls, so a live call waited for one to finish: on 2 cores with tiny.en (bench/e2e.py
--mode backfill) live p95 4.0-4.8 s, 1.9 s of it waiting for a thread, against 2.5-2.8 s with the
default slots. Held jobs are not the deep-backlog deferral of live
chatter (:func:`rdio_core.jobs.release_deferred` leaves them alone) and do not count as backlog.

A call is left out when this run already holds a job for it, when any job of it is still pending,
queued or processing (no double work), when its audio was removed by retention, and with
``only_missing`` when it has a completed transcript.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from rdio_core import jobs
from rdio_core.calls import CallFilter
from rdio_core.models import Base, BigId, Call, JobStatus, TranscriptionJob, utcnow

log = logging.getLogger(__name__)

BATCH = 500
#: Pause between batches: lets queued uploads take the write lock (SQLite has one writer).
PAUSE_SECONDS = 0.05
ACTIVE = (JobStatus.PENDING, JobStatus.DEFERRED, JobStatus.QUEUED, JobStatus.PROCESSING)
IN_FLIGHT = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING)
#: The advisory lock key releasers take turns on (PostgreSQL): "rdioBF" in ASCII.
RELEASE_LOCK = 0x72_64_69_6F_42_46
#: What a held job's card says until it is released.
HELD_REASON = "backfill: waits for one of transcription.backfill_slots ({slots})"

Publish = Callable[[list[tuple[int, int]]], None]


class BackfillRun(Base):
    """One backfill request: its filters, and how far queuing got."""

    __tablename__ = "backfill_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    params_key: Mapped[str] = mapped_column(String(64), index=True)
    since: Mapped[datetime | None] = mapped_column(DateTime)
    until: Mapped[datetime | None] = mapped_column(DateTime)
    system_id: Mapped[int | None] = mapped_column(BigInteger)
    talkgroup: Mapped[int | None] = mapped_column(BigInteger)
    model: Mapped[str | None] = mapped_column(String(200))
    only_missing: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    matched: Mapped[int] = mapped_column(Integer, default=0)  # calls the filters matched, last pass
    queued: Mapped[int] = mapped_column(Integer, default=0)  # jobs this run created, all passes
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)  # the last pass reached the end


class BackfillJob(Base):
    """A job a run created (deleted with the job, and so with its call)."""

    __tablename__ = "backfill_jobs"
    __table_args__ = (Index("ix_backfill_jobs_run_call", "run_id", "call_id"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("backfill_runs.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("transcription_jobs.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)


@dataclass(frozen=True)
class BackfillRequest:
    """What to re-transcribe: calls in [since, until) of a system/talkgroup (None = any)."""

    since: datetime | None = None
    until: datetime | None = None
    system: int | None = None
    talkgroup: int | None = None
    model: str | None = None
    only_missing: bool = False

    def key(self) -> str:
        """The run's identity: the same request finds the same run."""
        fields = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Progress:
    """A run's jobs by status; ``done`` counts those that ended (completed, failed, skipped)."""

    run_id: int
    total: int
    counts: dict[str, int]
    queuing_finished: bool

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in jobs.FINAL)

    @property
    def finished(self) -> bool:
        return self.queuing_finished and self.done >= self.total


def open_run(
    factory: sessionmaker[Session], request: BackfillRequest, priority: int, requested_by: str | None
) -> tuple[BackfillRun, bool]:
    """The run for ``request``: the existing one (to resume), else a new one. Returns (run, resumed)."""
    key = request.key()
    with factory() as session:
        run = session.execute(
            select(BackfillRun).where(BackfillRun.params_key == key).order_by(BackfillRun.id.desc()).limit(1)
        ).scalar_one_or_none()
        if run is not None:
            return run, True
        now = utcnow()
        run = BackfillRun(
            params_key=key,
            since=request.since,
            until=request.until,
            system_id=request.system,
            talkgroup=request.talkgroup,
            model=request.model,
            only_missing=request.only_missing,
            priority=priority,
            requested_by=requested_by,
            matched=0,
            queued=0,
            created_at=now,
            updated_at=now,
        )
        session.add(run)
        session.commit()
        return run, False


def queue_run(
    factory: sessionmaker[Session],
    run_id: int,
    publish: Publish | None = None,
    stop: threading.Event | None = None,
    batch: int = BATCH,
    slots: int | None = None,
) -> int:
    """Create the run's missing jobs, ``batch`` calls per transaction; return how many were created.

    The jobs are held (``deferred``); after each batch the first ones are released while fewer than
    ``slots`` backfill jobs are in flight (None: all of them), and ``publish`` gets those (job id,
    priority). Without ``publish`` (or if it fails) released jobs stay ``pending`` for the sweeper."""
    with factory() as session:
        run = session.get(BackfillRun, run_id)
        if run is None:
            raise LookupError(f"no backfill run {run_id}")
        session.execute(update(BackfillRun).where(BackfillRun.id == run_id).values(matched=0, queued_at=None))
        session.commit()
    created = 0
    last_id = 0
    reason = HELD_REASON.format(slots=slots if slots is not None else "unlimited")
    while stop is None or not stop.is_set():
        with factory() as session:
            call_ids = list(session.execute(_matching(run, last_id, batch)).scalars())
            if not call_ids:
                break
            last_id = call_ids[-1]
            excluded = _excluded(session, run, call_ids)
            new = [
                TranscriptionJob(
                    **jobs.job_row(call_id, run.priority, JobStatus.DEFERRED, reason, model=run.model)
                )
                for call_id in call_ids
                if call_id not in excluded
            ]
            session.add_all(new)
            session.flush()  # one INSERT per batch; gives the ids the links need
            session.add_all(BackfillJob(run_id=run_id, job_id=j.id, call_id=j.call_id) for j in new)
            session.execute(
                update(BackfillRun)
                .where(BackfillRun.id == run_id)
                .values(
                    matched=BackfillRun.matched + len(call_ids),
                    queued=BackfillRun.queued + len(new),
                    updated_at=utcnow(),
                )
            )
            session.commit()
        created += len(new)
        to_publish = release(factory, slots)
        if publish is not None and to_publish:
            try:
                publish(to_publish)
            except Exception:  # the jobs are committed: the sweeper publishes them
                log.exception("backfill run %s: publish failed; the sweeper will publish", run_id)
        time.sleep(PAUSE_SECONDS)
    else:
        log.info("backfill run %s: stopped after %d new jobs", run_id, created)
        return created
    with factory() as session:
        session.execute(update(BackfillRun).where(BackfillRun.id == run_id).values(queued_at=utcnow()))
        session.commit()
    log.info("backfill run %s: %d new jobs queued", run_id, created)
    return created


def is_backfill_job() -> ColumnElement[bool]:
    """A where-clause on ``TranscriptionJob``: the job was created by a backfill run."""
    return exists().where(BackfillJob.job_id == TranscriptionJob.id)


def _one_at_a_time(session: Session) -> None:
    """Hold the release lock until the session commits: a PostgreSQL advisory lock; on SQLite a
    write (a no-op update), which takes the database's one write lock for the transaction."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(RELEASE_LOCK)))
    else:
        session.execute(update(BackfillRun).where(BackfillRun.id == -1).values(updated_at=utcnow()))


def release(factory: sessionmaker[Session], slots: int | None, limit: int = BATCH) -> list[tuple[int, int]]:
    """Make held backfill jobs pending while fewer than ``slots`` are in flight (None: up to
    ``limit``), most urgent then oldest first; returns (job id, priority) of each to publish.

    Releasers take turns (:func:`_one_at_a_time`): a round of batched backfill calls ends together,
    and each call's worker thread releases; counting side by side, a releaser that counted before
    another committed released the next jobs into slots already filled (tests/test_backfill.py).
    Every job's end calls this, so with nothing held it only reads: the turn is a write lock on
    SQLite, which each live call would otherwise take once more."""
    with factory() as session:
        held = session.execute(
            select(TranscriptionJob.id)
            .where(TranscriptionJob.status == JobStatus.DEFERRED, is_backfill_job())
            .limit(1)
        ).first()
        if held is None:
            return []
        session.rollback()  # end the read, so the turn below starts the transaction
        _one_at_a_time(session)
        room = limit
        if slots is not None:
            busy = session.execute(
                select(func.count())
                .select_from(TranscriptionJob)
                .where(TranscriptionJob.status.in_(IN_FLIGHT), is_backfill_job())
            ).scalar_one()
            room = min(limit, slots - busy)
        if room <= 0:
            return []
        released = jobs.release_where(session, room, is_backfill_job())
        session.commit()
    return released


def _matching(run: BackfillRun, after_id: int, limit: int) -> Select[int]:
    which = CallFilter(
        system=run.system_id, talkgroup=run.talkgroup, since=run.since, until=run.until, has_audio=True
    )
    return which.apply(select(Call.id).where(Call.id > after_id)).order_by(Call.id).limit(limit)


def _excluded(session: Session, run: BackfillRun, call_ids: list[int]) -> set[int]:
    """Of ``call_ids``: those this run covers already, those with a job under way, and (only
    missing) those with a transcript."""
    covered = set(
        session.execute(
            select(BackfillJob.call_id).where(BackfillJob.run_id == run.id, BackfillJob.call_id.in_(call_ids))
        ).scalars()
    )
    busy_statuses: list[str] = list(ACTIVE)
    if run.only_missing:
        busy_statuses.append(JobStatus.COMPLETED)
    busy = set(
        session.execute(
            select(TranscriptionJob.call_id).where(
                TranscriptionJob.call_id.in_(call_ids), TranscriptionJob.status.in_(busy_statuses)
            )
        ).scalars()
    )
    return covered | busy


def progress(session: Session, run_id: int) -> Progress | None:
    """The run's jobs counted by status (None: no such run)."""
    run = session.get(BackfillRun, run_id)
    if run is None:
        return None
    rows = session.execute(
        select(TranscriptionJob.status, func.count())
        .join(BackfillJob, BackfillJob.job_id == TranscriptionJob.id)
        .where(BackfillJob.run_id == run_id)
        .group_by(TranscriptionJob.status)
    ).all()
    counts = {str(status): int(n) for status, n in rows}
    return Progress(run_id, sum(counts.values()), counts, run.queued_at is not None)


def wait(
    factory: sessionmaker[Session],
    run_id: int,
    on_progress: Callable[[Progress], None],
    interval: float = 1.0,
    timeout: float | None = None,
) -> Progress:
    """Poll the run's job states until every job ended (or ``timeout``); report each poll."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with factory() as session:
            current = progress(session, run_id)
        assert current is not None
        on_progress(current)
        if current.finished or (deadline is not None and time.monotonic() >= deadline):
            return current
        time.sleep(interval)
