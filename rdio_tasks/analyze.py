"""``analyze_call``: find a call's dispatch tones at upload, store them, and fire tone alerts.

Runs on the ``alerts`` queue, never ``gpu``: a tone alert must not wait behind transcriptions (the
goal is upload-to-alert p95 under 1 s; decoding and detecting a 5 s call takes ~15 ms). The task
is idempotent: ``calls.analyzed_at`` is set by a compare-and-set UPDATE in the same transaction
as ``calls.tones``, the live feed's event and the tone-stage alert deliveries (the outbox), so a
redelivered or republished message finds the call analysed and does nothing.

Publishing follows the transcription jobs' outbox: the API's call writer hands new call ids to
:func:`publish_analysis` after the call commits (a background thread; an upload never waits on
Redis), and :func:`sweep_once` re-publishes calls whose ``analyzed_at`` is still NULL once they are
``STALE_AFTER_SECONDS`` old: a publish lost while Redis was down, a worker killed mid-task. The
sweep looks back only ``tones.sweep_max_age_seconds`` (1 h by default), so calls stored before tone
detection existed are not all analysed at once, firing alerts for pages long past.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import alerts
from rdio_core.alerts.publish import waiting_messages
from rdio_core.calls import StoredCall
from rdio_core.models import Call, Event, EventKind, utcnow
from rdio_core.settings import Settings
from rdio_tasks.celery_app import app
from rdio_tasks.context import WorkerContext, context
from rdio_tasks.errors import AudioTooLongError, ErrorKind, PermanentError, TransientError, classify, describe

if TYPE_CHECKING:
    from rdio_tasks.tones import Tone

log = logging.getLogger(__name__)

TASK = "rdio_tasks.analyze_call"
QUEUE = "alerts"
#: The rate the detector gets (what ``decode_audio`` and the transcription worker use).
SAMPLE_RATE = 16000
#: A call not analysed this long after it was received is re-published by the sweeper. A live call
#: is analysed within a second; a minute leaves a wide margin for a busy alerts worker.
STALE_AFTER_SECONDS = 60.0
#: Calls re-published per sweep at most (the oldest first); the next sweep takes the rest.
SWEEP_BATCH = 500
#: After a failed publish, new calls are left to the sweeper this long instead of each paying the
#: broker's connect timeout.
BROKER_DOWN_SECONDS = 5.0
RETRY_BACKOFF_FACTOR = 2
RETRY_BACKOFF_MAX_SECONDS = 60


# -- the task -------------------------------------------------------------------------------------


def detect_call_tones(ctx: WorkerContext, call_id: int, audio_path: str) -> list[Tone]:
    """The tones of the call's audio; none when the audio cannot be read (the transcription job
    reports that problem; analysis has nothing to find and must not be retried forever)."""
    from rdio_tasks.audio_decode import decode_audio
    from rdio_tasks.tones import detect_tones

    path = ctx.store.absolute(audio_path)
    max_seconds = ctx.settings.transcription.max_audio_seconds
    try:
        samples = decode_audio(path, SAMPLE_RATE, max_seconds=max_seconds)
    except AudioTooLongError as exc:
        log.warning("call %s: not analysed for tones: %s", call_id, exc)
        return []
    except PermanentError as exc:
        log.warning("call %s: not analysed for tones: %s", call_id, exc)
        return []
    return detect_tones(samples, SAMPLE_RATE, ctx.settings.tones)


def store_tones(
    factory: sessionmaker[Session], settings: Settings, call_id: int, tones: list[Tone]
) -> list[int]:
    """Store the tones and fire tone alerts in one transaction, only if the call is still not
    analysed; the alert deliveries to publish after the commit."""
    found = [t.to_json() for t in tones]
    with factory() as session:
        result = session.execute(
            update(Call)
            .where(Call.id == call_id, Call.analyzed_at.is_(None))
            .values(tones=found, analyzed_at=utcnow())
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:  # deleted, or analysed by another delivery of this message
            session.rollback()
            return []
        call = session.get(Call, call_id)
        assert call is not None
        if found:
            session.add(Event(kind=EventKind.CALL_ANALYZED, call_id=call_id, created_at=utcnow()))
        fired = alerts.fire_alerts(session, settings, StoredCall.model_validate(call), "tones")
        session.commit()
    return fired


def analyze(ctx: WorkerContext, call_id: int) -> dict[str, Any]:
    """Analyse one call (see the module docstring); what happened, for the task's result."""
    settings = ctx.settings
    if not settings.tones.enabled:
        return {"call_id": call_id, "status": "disabled"}
    with ctx.factory() as session:
        row = session.execute(select(Call.audio_path, Call.analyzed_at).where(Call.id == call_id)).first()
    if row is None:
        return {"call_id": call_id, "status": "missing"}
    if row.analyzed_at is not None:
        return {"call_id": call_id, "status": "done"}
    started = time.perf_counter()
    try:
        tones = detect_call_tones(ctx, call_id, row.audio_path)
    except Exception as exc:
        if classify(exc) is ErrorKind.TRANSIENT:
            raise
        # A bug on this audio would fail the same way on every republish: record no tones, loudly.
        log.error("call %s: tone detection failed, stored as none: %s", call_id, describe(exc), exc_info=exc)
        tones = []
    detect_ms = (time.perf_counter() - started) * 1000
    fired = store_tones(ctx.factory, settings, call_id, tones)
    alerts.publish_deliveries(fired)
    from rdio_tasks.tones import describe as describe_tone

    log.info(
        "call %s: %s in %.0f ms%s",
        call_id,
        "; ".join(describe_tone(t) for t in tones) or "no tones",
        detect_ms,
        f", alerts {fired}" if fired else "",
    )
    return {"call_id": call_id, "status": "analyzed", "tones": len(tones), "alerts": fired}


class AnalyzeTask(Task):
    """Acked after the work, retried with backoff on transient errors (the database away); a
    republish by the sweeper covers anything that still falls through."""

    autoretry_for = (TransientError,)
    retry_backoff = RETRY_BACKOFF_FACTOR
    retry_backoff_max = RETRY_BACKOFF_MAX_SECONDS
    retry_jitter = True
    max_retries = 5
    acks_late = True


@app.task(name=TASK, bind=True, base=AnalyzeTask)
def analyze_call(self: AnalyzeTask, call_id: int) -> dict[str, Any]:
    """Detect and store the tones of ``call_id``, then fire its tone alerts."""
    try:
        return analyze(context(), call_id)
    except TransientError:
        raise
    except Exception as exc:
        if classify(exc) is ErrorKind.TRANSIENT:
            raise TransientError(describe(exc)) from exc
        raise


# -- publishing (API process) ---------------------------------------------------------------------


def send(app: Celery, call_ids: list[int]) -> int:
    """Publish analysis of each call now; how many went out. Stops at the first broker failure."""
    sent = 0
    for call_id in call_ids:
        try:
            app.send_task(TASK, args=[call_id], queue=QUEUE)
        except Exception as exc:
            log.warning(
                "calls %s: broker unavailable for tone analysis (%s: %s); left for the sweeper",
                call_ids[sent:],
                type(exc).__name__,
                exc,
            )
            break
        sent += 1
    return sent


class AnalysisPublisher:
    """Publishes analysis of committed calls from a background thread, and sweeps for lost ones.
    ``settings`` returns the running settings (they are reloaded live)."""

    def __init__(self, settings: Callable[[], Settings], factory: sessionmaker[Session], app: Celery) -> None:
        self.settings = settings
        self.factory = factory
        self.app = app
        self._queue: queue.Queue[list[int] | None] = queue.Queue()
        self._down_until = 0.0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._publish_loop, name="analysis-publisher", daemon=True),
            threading.Thread(target=self._sweep_loop, name="analysis-sweeper", daemon=True),
        ]
        self.last_sweep: dict[str, Any] = {}

    def start(self) -> AnalysisPublisher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=2)

    def publish_later(self, call_ids: list[int]) -> None:
        """The call writer's hook: queue the calls just committed."""
        if call_ids and self.settings().tones.enabled:
            self._queue.put(list(call_ids))

    def _publish_loop(self) -> None:
        while True:
            ids = self._queue.get()
            if ids is None:
                return
            while True:  # everything waiting goes in one pass
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                ids += more
            if time.monotonic() < self._down_until:
                continue  # the sweeper publishes them when the broker is back
            if send(self.app, ids) < len(ids):
                self._down_until = time.monotonic() + BROKER_DOWN_SECONDS

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.settings().transcription.sweep_interval_seconds):
            try:
                self.last_sweep = sweep_once(self.factory, self.settings(), self.app)
            except Exception:
                log.exception("analysis sweep failed")


def sweep_candidates(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Calls received within ``tones.sweep_max_age_seconds`` but over :data:`STALE_AFTER_SECONDS`
    ago and still not analysed, oldest first."""
    oldest = now - timedelta(seconds=settings.tones.sweep_max_age_seconds)
    newest = now - timedelta(seconds=STALE_AFTER_SECONDS)
    stmt = (
        select(Call.id)
        .where(Call.analyzed_at.is_(None), Call.received_at >= oldest, Call.received_at <= newest)
        .order_by(Call.received_at)
        .limit(SWEEP_BATCH)
    )
    return list(session.execute(stmt).scalars())


def sweep_once(factory: sessionmaker[Session], settings: Settings, app: Celery) -> dict[str, Any]:
    """Re-publish analysis of calls that should have been analysed by now. Skipped while messages
    wait in the ``alerts`` queue: the calls may be among them (a worker down, or behind), and each
    republish would only add a duplicate."""
    if not settings.tones.enabled:
        return {"published": 0, "tones": "disabled"}
    waiting = waiting_messages(app)
    if waiting is None:
        return {"broker": "down", "published": 0}
    if waiting > 0:
        return {"broker": "ok", "published": 0, "waiting": waiting}
    with factory() as session:
        ids = sweep_candidates(session, settings, utcnow())
    published = send(app, ids) if ids else 0
    if published:
        log.info("analysis sweeper: republished calls %s", ids[:published])
    return {"broker": "ok", "published": published, "waiting": waiting}
