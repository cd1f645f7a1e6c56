"""A stored call's way onward: its transcription job, its tone analysis, its alert deliveries.

Each of the three is a row committed first and a task published after (:mod:`rdio_core.outbox`):
:class:`Pipeline` holds one :class:`~rdio_core.outbox.Publisher` per task and says, for each, what a
sweep finds due. What follows a stored transcript (its search document, the alert rules its text
matches, their deliveries published after the commit) is :meth:`Pipeline.store_transcript`, here
and nowhere else, so ``rdio_core.jobs`` knows nothing of alerts.

The API builds one with the broker (``rdio_api.runtime``), ``rdio-api sweep`` and the importer too;
a worker builds one to publish the deliveries its tasks fire (``rdio_tasks.context``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import backfill, jobs
from rdio_core.alerts import outbox as alert_outbox
from rdio_core.calls import StoredCall
from rdio_core.models import Call, JobStatus, TranscriptionJob, utcnow
from rdio_core.outbox import Broker, Message, Publisher, QueueCounts, Sweep, TaskRef
from rdio_core.settings import Settings

log = logging.getLogger(__name__)

#: A call not analysed this long after it was received is re-published by the sweeper. A live call
#: is analysed within a second; a minute leaves a wide margin for a busy tones worker.
STALE_AFTER_SECONDS = 60.0
#: Calls re-published per analysis sweep at most (the oldest first); the next sweep takes the rest.
SWEEP_BATCH = 500


class Publishes(Protocol):
    """Anything that takes messages of committed rows (a Publisher, the importer's feeder)."""

    def publish_later(self, messages: list[Message]) -> None: ...


def job_message(job_id: int, priority: int) -> Message:
    """A job's message: job priority 1 (most urgent) .. 5 onto Redis steps 0 .. 8 (0 served first)."""
    return Message(job_id, jobs.celery_priority(priority))


def messages(ids: list[int]) -> list[Message]:
    return [Message(row_id) for row_id in ids]


def analysis_candidates(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Calls received within ``tones.sweep_max_age_seconds`` but over :data:`STALE_AFTER_SECONDS`
    ago and still not analysed, oldest first. The look-back bound keeps calls stored before tone
    detection existed from all being analysed at once, firing alerts for pages long past."""
    oldest = now - timedelta(seconds=settings.tones.sweep_max_age_seconds)
    newest = now - timedelta(seconds=STALE_AFTER_SECONDS)
    stmt = (
        select(Call.id)
        .where(Call.analyzed_at.is_(None), Call.received_at >= oldest, Call.received_at <= newest)
        .order_by(Call.received_at)
        .limit(SWEEP_BATCH)
    )
    return list(session.execute(stmt).scalars())


class Pipeline:
    """The publishers of one process. ``settings`` returns the running settings (reloaded live)."""

    def __init__(
        self,
        broker: Broker,
        factory: sessionmaker[Session],
        settings: Callable[[], Settings],
        analysis: Publishes | None = None,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.jobs = Publisher(
            TaskRef.TRANSCRIBE,
            broker,
            sweep=self._due_jobs,
            interval=lambda: settings().transcription.sweep_interval_seconds,
            sent=lambda message, task_id: jobs.mark_queued(factory, message.row_id, task_id),
        )
        self.analysis = Publisher(
            TaskRef.ANALYZE,
            broker,
            sweep=self._due_analysis,
            interval=lambda: settings().transcription.sweep_interval_seconds,
            wanted=lambda: settings().tones.enabled,
        )
        self.deliveries = Publisher(
            TaskRef.DELIVER_ALERT,
            broker,
            sweep=self._due_deliveries,
            interval=lambda: settings().alerts.sweep_interval_seconds,
        )
        #: Where committed calls' analyses go: the analysis publisher, or the importer's feeder.
        self.analyses: Publishes = analysis or self.analysis

    def start(self, transcription: bool = True) -> Pipeline:
        """Start publishing and sweeping (the API): jobs only with transcription on; analysis and
        deliveries always (tone alerts need no Whisper, and ``tones.enabled`` is read per call)."""
        if transcription:
            self.jobs.start()
        self.analysis.start()
        self.deliveries.start()
        return self

    def stop(self) -> None:
        for publisher in (self.jobs, self.analysis, self.deliveries):
            publisher.stop()

    def sweep_once(self) -> dict[str, Any]:
        """One pass of every sweeper (``rdio-api sweep``)."""
        return {
            **self.jobs.sweep_once(),
            "alerts": self.deliveries.sweep_once(),
            "tones": self.analysis.sweep_once(),
        }

    # -- after a commit ----------------------------------------------------------------------------

    def jobs_committed(self, items: list[tuple[int, int]]) -> None:
        """(job id, job priority) of pending jobs just committed."""
        self.jobs.publish_later([job_message(job_id, priority) for job_id, priority in items])

    def calls_committed(self, call_ids: list[int]) -> None:
        self.analyses.publish_later(messages(call_ids))

    def deliveries_fired(self, delivery_ids: list[int]) -> None:
        self.deliveries.publish_later(messages(delivery_ids))

    def job_ended(self) -> None:
        """A job ended (a worker): fill the backfill slot it may have held now, not at the next sweep,
        which would leave the slot idle for up to ``sweep_interval_seconds``. Best effort: the sweep
        releases what this could not (a database blip must not fail the job that just ended)."""
        try:
            released = backfill.release(self.factory, self.settings().transcription.backfill_limit())
        except Exception:
            log.warning("releasing held backfill jobs failed; the sweeper will", exc_info=True)
            return
        self.jobs_committed(released)

    def store_transcript(self, job_id: int, worker: str, values: dict[str, Any]) -> bool:
        """Store a job's result (:func:`rdio_core.jobs.complete`) with, in the same transaction,
        the deliveries of the alert rules its text matches (an outbox: published after the commit,
        swept if the publish is lost). False when the worker no longer owned the job."""
        settings = self.settings()
        fired: list[int] = []

        def fire(session: Session, call: StoredCall, text: str) -> None:
            fired.extend(alert_outbox.fire_alerts(session, settings, call, "transcript", text))

        stored = jobs.complete(self.factory, job_id, worker, values, fire)
        if stored and fired:
            self.deliveries_fired(fired)
        self.job_ended()
        return stored

    # -- what each sweep finds due -------------------------------------------------------------------

    def _due_jobs(self, counts: QueueCounts) -> Sweep:
        """Pending jobs, jobs whose worker lease lapsed, and queued jobs the broker lost; deferred
        jobs released while the backlog is under ``transcription.defer_backlog_depth``."""
        tx = self.settings().transcription
        now = utcnow()
        stale_before = now - timedelta(seconds=tx.stale_after_seconds)
        with self.factory() as session:
            queued = session.execute(
                select(func.count())
                .select_from(TranscriptionJob)
                .where(TranscriptionJob.status == JobStatus.QUEUED)
            ).scalar_one()
            # Messages waiting or reserved cover the queued jobs: nothing was lost, republish none.
            include_queued = counts.total < queued
            candidates = jobs.sweep_candidates(session, stale_before, now, include_queued)
            picked = [(j.id, j.priority, j.status, j.attempts) for j in candidates]
            # Touch them so a second sweeper (another API process) skips them for a while.
            for job in candidates:
                if job.status != JobStatus.PROCESSING:
                    job.updated_at = now
            session.commit()
        # Deferred jobs (chatter held back while the backlog was deep) as the queue drains, and held
        # backfill jobs into free backfill slots.
        released = jobs.release_deferred(
            self.factory, tx.defer_backlog_depth, unless=backfill.is_backfill_job()
        )
        if released:
            log.info("sweeper: released %d deferred jobs", len(released))
        released += backfill.release(self.factory, tx.backfill_limit())
        due = [job_message(job_id, priority) for job_id, priority in released]
        for job_id, priority, status, attempts in picked:
            if status == JobStatus.PROCESSING and attempts >= tx.max_attempts:  # the claim ends it
                jobs.claim(self.factory, job_id, "sweeper", tx.lease_seconds, tx.max_attempts)
                continue
            due.append(job_message(job_id, priority))
        return Sweep(due, {"released_deferred": len(released), "queue_depth": counts.total})

    def _due_analysis(self, counts: QueueCounts) -> Sweep:
        """Calls that should have been analysed by now (:func:`analysis_candidates`). None while
        messages wait in the queue: the calls may be among them (a worker down, or behind), and
        each republish would only add a duplicate."""
        if counts.waiting > 0:
            return Sweep([], {"waiting": counts.waiting})
        with self.factory() as session:
            ids = analysis_candidates(session, self.settings(), utcnow())
        return Sweep(messages(ids), {"waiting": 0})

    def _due_deliveries(self, counts: QueueCounts) -> Sweep:
        """Deliveries whose message was lost or whose worker vanished
        (:func:`rdio_core.alerts.outbox.sweep_candidates`)."""
        now = utcnow()
        stale_before = now - timedelta(seconds=self.settings().alerts.stale_after_seconds)
        with self.factory() as session:
            ids = alert_outbox.sweep_candidates(session, now, stale_before, counts.waiting)
            session.commit()
        return Sweep(messages(ids), {"waiting": counts.waiting})
