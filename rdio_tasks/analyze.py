"""``analyze_call``: find a call's dispatch tones at upload, store them, and fire tone alerts.

Runs on the ``tones`` queue (rdio_core.outbox.refs.Queue), never ``gpu``: a tone alert must not
wait behind transcriptions (the goal is upload-to-alert p95 under 1 s; decoding and detecting a 5 s
call takes ~15 ms). The task
is idempotent: ``calls.analyzed_at`` is set by a compare-and-set UPDATE in the same transaction
as ``calls.tones``, the live feed's event and the tone-stage alert deliveries (the outbox), so a
redelivered or republished message finds the call analysed and does nothing.

Publishing is the outbox's (rdio_core.pipeline): the API's call writer hands new call ids to the
analysis publisher after the call commits (a background thread; an upload never waits on Redis),
and its sweeper re-publishes calls whose ``analyzed_at`` is still NULL a minute later: a publish
lost while Redis was down, a worker killed mid-task.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from rdio_core.alerts import outbox as alert_outbox
from rdio_core.calls import StoredCall
from rdio_core.models import Call, Event, EventKind, utcnow
from rdio_core.outbox import TaskRef
from rdio_core.settings import Settings
from rdio_tasks.celery_app import app
from rdio_tasks.context import WorkerContext, context
from rdio_tasks.errors import AudioTooLongError, ErrorKind, PermanentError, TransientError, classify, describe
from rdio_tasks.task_base import RetryingTask

if TYPE_CHECKING:
    from rdio_tasks.tones import Tone

log = logging.getLogger(__name__)

#: The rate the detector gets (what ``decode_audio`` and the transcription worker use).
SAMPLE_RATE = 16000
#: The longest retry delay: a tone alert an hour late is worth little, and the sweeper republishes
#: a call still not analysed after a minute anyway.
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
        fired = alert_outbox.fire_alerts(session, settings, StoredCall.model_validate(call), "tones")
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
    ctx.pipeline.deliveries_fired(fired)
    from rdio_tasks.tones import describe as describe_tone

    log.info(
        "call %s: %s in %.0f ms%s",
        call_id,
        "; ".join(describe_tone(t) for t in tones) or "no tones",
        detect_ms,
        f", alerts {fired}" if fired else "",
    )
    return {"call_id": call_id, "status": "analyzed", "tones": len(tones), "alerts": fired}


class AnalyzeTask(RetryingTask):
    """Retried on transient errors (the database away) up to ``max_retries``: the call has no
    attempt counter, and a republish by the sweeper covers anything that still falls through."""

    max_retries = 5
    retry_backoff_max = RETRY_BACKOFF_MAX_SECONDS


@app.task(name=TaskRef.ANALYZE.task_name, bind=True, base=AnalyzeTask)
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
