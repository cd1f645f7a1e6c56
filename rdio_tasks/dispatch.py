"""Getting jobs to the broker: publish after commit, and sweep anything that fell through.

Runs in the API process (and as ``rdio-api sweep``). An upload never waits on Redis: jobs are
published from a background thread, and when the broker is down they stay ``pending`` in the
database until the sweeper finds the broker back. There is no dispatcher without a configured
``broker_url``: a guessed broker could be anyone's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import jobs
from rdio_core.models import JobStatus, TranscriptionJob, utcnow
from rdio_core.settings import Settings
from rdio_tasks import broker_compat
from rdio_tasks.broker_compat import BrokerCompatError, QueueCounts
from rdio_tasks.celery_app import NO_BROKER

log = logging.getLogger(__name__)

TASK = "rdio_tasks.transcribe_call"
QUEUE = "gpu"
#: How long ``stop`` waits for the threads in all. A publish fails in ~0.01 s with the broker down
#: and a depth probe in < 0.1 s, so this only bounds the unexpected (SIGTERM took 10 s before).
STOP_TIMEOUT_SECONDS = 2.0


class Dispatcher:
    def __init__(self, settings: Settings, factory: sessionmaker[Session], app: Celery) -> None:
        self.settings = settings
        self.factory = factory
        self.app = app
        if not settings.broker_url:
            raise ValueError(NO_BROKER)
        app.conf.update(broker_url=settings.broker_url)
        self._queue: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self._stop = threading.Event()
        self._broker_down_until = 0.0
        self._threads: list[threading.Thread] = []
        self.last_sweep: dict[str, Any] = {}

    # -- publishing ------------------------------------------------------------------------------

    def start(self, sweeper: bool = True) -> None:
        self._threads.append(threading.Thread(target=self._publisher, name="job-publisher", daemon=True))
        if sweeper:
            self._threads.append(threading.Thread(target=self._sweeper, name="job-sweeper", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for t in self._threads:  # daemon threads: one still stuck on the network dies with the process
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def publish_later(self, jobs_to_publish: list[tuple[int, int]]) -> None:
        """Queue (job id, priority) pairs for the publisher thread."""
        for item in jobs_to_publish:
            self._queue.put(item)

    def _publisher(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            if time.monotonic() < self._broker_down_until:
                continue  # stays pending; the sweeper publishes it when the broker is back
            self.publish(*item)

    def publish(self, job_id: int, priority: int) -> bool:
        """Send one job to the broker and mark it queued; False (job left as is) on broker failure."""
        try:
            result = self.app.send_task(
                TASK, args=[job_id], queue=QUEUE, priority=jobs.celery_priority(priority)
            )
        except Exception as exc:
            self._broker_down_until = time.monotonic() + 5
            log.warning(
                "job %s: broker unavailable (%s: %s); left for the sweeper", job_id, type(exc).__name__, exc
            )
            return False
        jobs.mark_queued(self.factory, job_id, result.id)
        log.debug("job %s published as task %s", job_id, result.id)
        return True

    # -- sweeping --------------------------------------------------------------------------------

    def _sweeper(self) -> None:
        interval = self.settings.transcription.sweep_interval_seconds
        while not self._stop.wait(interval):
            try:
                self.sweep_once()
            except Exception:
                log.exception("sweep failed")

    def sweep_once(self) -> dict[str, Any]:
        """Republish pending jobs, jobs whose worker lease lapsed, and queued jobs the broker lost;
        release deferred jobs while the backlog is under ``transcription.defer_backlog_depth``."""
        tx = self.settings.transcription
        now = utcnow()
        stale_before = now - timedelta(seconds=tx.stale_after_seconds)
        depth = self.broker_depth()
        if depth is None:
            self.last_sweep = {"at": now.isoformat(), "broker": "down", "published": 0}
            return self.last_sweep
        with self.factory() as session:
            queued = session.execute(
                select(func.count())
                .select_from(TranscriptionJob)
                .where(TranscriptionJob.status == JobStatus.QUEUED)
            ).scalar_one()
            # Messages waiting or reserved cover the queued jobs: nothing was lost, republish none.
            include_queued = depth < queued
            candidates = jobs.sweep_candidates(session, stale_before, now, include_queued)
            picked = [(j.id, j.priority, j.status, j.attempts) for j in candidates]
            # Touch them so a second sweeper (another API process) skips them for a while.
            for job in candidates:
                if job.status != JobStatus.PROCESSING:
                    job.updated_at = now
            session.commit()
        published = 0
        # Deferred jobs (chatter held back while the backlog was deep) as the queue drains.
        released = jobs.release_deferred(self.factory, tx.defer_backlog_depth)
        for job_id, priority in released:
            if self.publish(job_id, priority):
                published += 1
        if released:
            log.info("sweeper: released %d deferred jobs", len(released))
        for job_id, priority, status, attempts in picked:
            if status == JobStatus.PROCESSING and attempts >= tx.max_attempts:
                jobs.claim(
                    self.factory, job_id, "sweeper", tx.lease_seconds, tx.max_attempts
                )  # ends it: gave up
                continue
            if self.publish(job_id, priority):
                published += 1
                log.info("sweeper: republished job %s (was %s)", job_id, status)
        self.last_sweep = {
            "at": now.isoformat(),
            "broker": "ok",
            "published": published,
            "released_deferred": len(released),
            "queue_depth": depth,
        }
        return self.last_sweep

    # -- broker introspection ---------------------------------------------------------------------

    def broker_depth(self) -> int | None:
        """Messages waiting in the gpu queue (all priorities) plus reserved-but-unacked ones."""
        counts = self.broker_counts()
        return None if counts is None else counts.total

    def broker_counts(self) -> QueueCounts | None:
        """The gpu queue's messages waiting and reserved, or None when the broker does not answer."""
        try:
            with self.app.connection_for_read() as conn:
                # One immediate retry: kombu's default 2 s pause made /ready, /metrics and
                # shutdown each wait 2 s whenever the broker was down.
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
                return broker_compat.queue_counts(conn.default_channel, QUEUE)
        except BrokerCompatError as exc:  # an upgrade moved a kombu internal: say which
            log.error("broker depth unknown: %s", exc)
            return None
        except Exception as exc:
            log.debug("broker depth unavailable: %s", exc)
            return None

    def broker_probe(self) -> str:
        return "ok" if self.broker_depth() is not None else "unavailable"
