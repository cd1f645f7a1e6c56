"""The worker registry and the heartbeat that keeps a running job's lease alive.

Every worker process (``celery -A rdio_tasks worker``) runs one :class:`Heartbeat` thread. Each beat
is one transaction: one UPDATE that pushes the lease of every job the process is running
``lease_seconds`` ahead, and one write of the process's row in ``workers`` (host, pid, queues,
model, device, current jobs, jobs done, failures, last heartbeat). So a lease can be short (30 s by
default, 660 s before: a task's whole time limit) and still never lapse under a job that is merely
slow, while a worker that is SIGKILLed or loses power stops beating and its jobs are re-published by
the sweeper once the lease runs out: recovery in under a minute instead of eleven.

The API reads the registry (``GET /api/transcription/workers``, queue status, ``/metrics``, the
transcription health check) instead of pinging workers over the broker, which took up to 1 s per
request (Celery's ``inspect().ping()`` waits its whole timeout for replies).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from rdio_core.models import Base, JobStatus, TranscriptionJob, utcnow
from rdio_core.outbox import Queue

log = logging.getLogger(__name__)


class Worker(Base):
    """One worker process, as its heartbeat last described it."""

    __tablename__ = "workers"

    # The name jobs carry in ``transcription_jobs.worker``: Celery node name and pid.
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[Any]] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_heartbeat_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # Set by a clean shutdown: a stopped worker is not "offline", it was stopped on purpose.
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)
    current_jobs: Mapped[list[Any]] = mapped_column(JSON)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


@dataclass
class Identity:
    """What a worker process says about itself in the registry."""

    name: str
    queues: list[str]
    model: str | None
    device: str | None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


class Heartbeat:
    """The jobs this process is running, and the thread that renews their leases.

    ``track``/``untrack`` are called by the task around a claimed job; ``done``/``failed`` count
    outcomes. The thread beats every ``interval`` seconds (``transcription.heartbeat_seconds``).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        identity: Identity,
        lease_seconds: Callable[[], float],
        interval: float,
    ) -> None:
        self.factory = factory
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.started_at = utcnow()
        self._lock = threading.Lock()
        # A multiset: a duplicate message for a job this process runs is tracked twice, so the
        # duplicate's end does not stop the renewal under the one still running.
        self._running: Counter[int] = Counter()
        self._done = 0
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the task reports ------------------------------------------------------------------

    def track(self, job_id: int) -> None:
        with self._lock:
            self._running[job_id] += 1

    def untrack(self, job_id: int) -> None:
        with self._lock:
            self._running[job_id] -= 1
            if self._running[job_id] <= 0:
                del self._running[job_id]

    def done(self, device: str | None = None) -> None:
        with self._lock:
            self._done += 1
            if device:
                self.identity.device = device

    def failed(self) -> None:
        with self._lock:
            self._failures += 1

    # -- the beat ---------------------------------------------------------------------------------

    def beat(self) -> int:
        """Renew the leases of the running jobs and write the registry row, in one transaction.
        Returns how many leases were renewed (a job another worker took over is not)."""
        with self._lock:
            running = sorted(self._running)
            done, failures = self._done, self._failures
        now = utcnow()
        ident = self.identity
        with self.factory() as session:
            renewed = 0
            if running:
                result = session.execute(
                    update(TranscriptionJob)
                    .where(
                        TranscriptionJob.id.in_(running),
                        TranscriptionJob.worker == ident.name,
                        TranscriptionJob.status == JobStatus.PROCESSING,
                    )
                    .values(lease_expires_at=now + timedelta(seconds=self.lease_seconds()))
                )
                renewed = getattr(result, "rowcount", 0) or 0
            row = session.get(Worker, ident.name)
            if row is None:
                row = Worker(name=ident.name, started_at=self.started_at)
                session.add(row)
            row.host, row.pid, row.queues = ident.host, ident.pid, list(ident.queues)
            row.model, row.device = ident.model, ident.device
            row.last_heartbeat_at, row.stopped_at = now, None
            row.current_jobs, row.jobs_done, row.failures = running, done, failures
            session.commit()
        if renewed < len(running):
            log.warning(
                "worker %s: %d of %d running jobs no longer owned (lease lapsed and taken over)",
                ident.name,
                len(running) - renewed,
                len(running),
            )
        return renewed

    def take_over(self, forget_after_seconds: float = 86400.0) -> None:
        """At start: earlier processes of this node (same ``-n`` name, other pid: the worker was
        restarted after a crash) are marked stopped, so they do not stay "offline" for ever; rows
        silent for a day are deleted (a box that was removed)."""
        node = self.identity.name.rsplit(":", 1)[0]
        now = utcnow()
        with self.factory() as session:
            session.execute(
                update(Worker)
                .where(
                    Worker.name.startswith(f"{node}:", autoescape=True),
                    Worker.name != self.identity.name,
                    Worker.stopped_at.is_(None),
                )
                .values(stopped_at=now)
            )
            session.execute(
                delete(Worker).where(Worker.last_heartbeat_at < now - timedelta(seconds=forget_after_seconds))
            )
            session.commit()

    def start(self) -> Heartbeat:
        try:
            self.take_over()
        except Exception as exc:
            log.warning("worker %s: registry clean-up failed: %s", self.identity.name, exc)
        self._thread = threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # the database away for a moment: the lease has slack for it
                log.warning("worker %s: heartbeat failed: %s", self.identity.name, exc)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop beating and mark the row stopped (a clean shutdown is not an offline worker)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.factory() as session:
                session.execute(
                    update(Worker).where(Worker.name == self.identity.name).values(stopped_at=utcnow())
                )
                session.commit()
        except Exception as exc:
            log.warning("worker %s: could not mark the registry row stopped: %s", self.identity.name, exc)


# -- reading the registry (API side) --------------------------------------------------------------


def list_workers(session: Session) -> list[Worker]:
    """Every registered worker, most recently heard first."""
    return list(session.execute(select(Worker).order_by(Worker.last_heartbeat_at.desc())).scalars())


def is_live(worker: Worker, now: datetime, fresh_seconds: float) -> bool:
    """Running and heard from within ``fresh_seconds``."""
    return worker.stopped_at is None and worker.last_heartbeat_at >= now - timedelta(seconds=fresh_seconds)


def is_offline(worker: Worker, now: datetime, offline_seconds: float) -> bool:
    """Not stopped on purpose, and silent for longer than ``offline_seconds``: it died."""
    return worker.stopped_at is None and worker.last_heartbeat_at < now - timedelta(seconds=offline_seconds)


def active_count(
    workers: Sequence[Worker], now: datetime, fresh_seconds: float, queue: str = Queue.GPU
) -> int:
    """Live workers consuming ``queue`` (the figure ``active_workers`` reports)."""
    return sum(1 for w in workers if queue in (w.queues or []) and is_live(w, now, fresh_seconds))
