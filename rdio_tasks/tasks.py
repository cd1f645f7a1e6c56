"""``transcribe_call``: one call's transcription, idempotent and safe to redeliver.

Failures are sorted once, by :func:`rdio_tasks.errors.classify`: a transient one hands the job back
(``queued``) and raises :class:`TransientError`, which Celery's ``autoretry_for`` turns into a retry
with exponential backoff and full jitter (capped by ``transcription.retry_backoff_max_seconds``); a
permanent one or a bug ends the job ``failed`` with the reason, at once. Retries are bounded by the
job's attempt counter in the database, not by Celery: a redelivered or republished message claims
the same row, and a claim past ``max_attempts`` ends the job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task, signals
from celery.exceptions import SoftTimeLimitExceeded

from rdio_core import jobs, workers
from rdio_core.jobs import ClaimOutcome
from rdio_core.models import JobStatus
from rdio_core.settings import ResolvedTranscription
from rdio_tasks.audio_decode import LENGTH_TOLERANCE_SECONDS, decode_audio
from rdio_tasks.audio_fetch import can_fetch, local_audio
from rdio_tasks.celery_app import app
from rdio_tasks.context import WorkerContext, context
from rdio_tasks.errors import AudioTooLongError, ErrorKind, TransientError, classify, describe

if TYPE_CHECKING:
    from rdio_tasks.asr import WhisperXEngine
    from rdio_tasks.radio import RadioOptions

log = logging.getLogger(__name__)

#: The rate Whisper models take (and ``decode_audio``'s default).
SAMPLE_RATE = 16000
#: Retry delays before the cap: 0-2 s, 0-4 s, 0-8 s... (factor 2, full jitter).
RETRY_BACKOFF_FACTOR = 2


@dataclass
class Outcome:
    """What one run of the task did: a job status, a claim outcome, or ``discarded``."""

    status: str
    detail: dict[str, Any] = field(default_factory=dict)
    retry_in: float | None = None


def call_radio_options(engine: WhisperXEngine, resolved: ResolvedTranscription) -> RadioOptions | None:
    """The engine's radio options with this call's word replacements (None: plain mode)."""
    base = engine.config.radio
    if base is None:
        return None
    if not resolved.replacements:
        return base
    return base.model_copy(update={"replacements": tuple(resolved.replacements) + base.replacements})


def settle_failure(ctx: WorkerContext, job_id: int, worker: str, exc: BaseException) -> Outcome:
    """End or hand back a claimed job after ``exc``, by its kind.

    Raises:
        TransientError: the job was released to ``queued``; Celery retries the task.
    """
    kind = classify(exc)
    reason = describe(exc)
    if kind is ErrorKind.TRANSIENT:
        log.warning("job %s: transient error, will retry: %s", job_id, reason)
        jobs.release(ctx.factory, job_id, worker, reason)
        raise TransientError(reason) from exc
    if kind is ErrorKind.PERMANENT:
        reason = str(exc) or reason  # written for people already ("cannot open ... as audio")
        log.warning("job %s failed: %s", job_id, reason)
    else:  # the same code on the same data would fail the same way: the traceback is the fix
        log.error("job %s failed, not retried (%s): %s", job_id, kind, reason, exc_info=exc)
    jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, reason)
    return Outcome(JobStatus.FAILED, {"error": reason})


def run_job(ctx: WorkerContext, job_id: int, worker: str) -> Outcome:
    """Claim, transcribe and store one job; permanent problems and bugs end it, transient ones raise
    :class:`TransientError` (see :func:`settle_failure`)."""
    tx = ctx.settings.transcription
    claim = jobs.claim(ctx.factory, job_id, worker, tx.lease_seconds, tx.max_attempts)
    if claim.outcome is ClaimOutcome.BUSY:
        log.info("job %s: another worker holds it; checking again in %.0fs", job_id, claim.retry_in)
        return Outcome(claim.outcome, retry_in=claim.retry_in)
    if claim.outcome is not ClaimOutcome.CLAIMED:
        log.info("job %s: nothing to do (%s)", job_id, claim.outcome)
        return Outcome(claim.outcome)
    job, call = claim.job, claim.call
    assert job is not None and call is not None
    log.info("job %s call %s: attempt %s on %s", job_id, call.id, job.attempts, worker)

    if call.audio_removed_at is not None:
        reason = f"audio deleted by retention on {call.audio_removed_at:%Y-%m-%d}"
        jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, reason)
        return Outcome(JobStatus.FAILED, {"error": reason})
    worker_cfg = ctx.settings.worker
    if not ctx.store.absolute(call.audio_path).is_file() and not can_fetch(worker_cfg):
        jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, f"audio file missing: {call.audio_path}")
        return Outcome(JobStatus.FAILED)
    try:
        decode_started = time.perf_counter()
        # The shared file, or (no shared disk) a copy fetched from the API and checked by sha256.
        with local_audio(ctx.store, call, worker_cfg) as path:
            samples = decode_audio(path, SAMPLE_RATE, max_seconds=tx.max_audio_seconds)
        decode_ms = (time.perf_counter() - decode_started) * 1000
        seconds = samples.size / SAMPLE_RATE
        jobs.record_duration(ctx.factory, call, seconds, LENGTH_TOLERANCE_SECONDS)
        if seconds < tx.min_audio_seconds:  # skipped before any model time is spent
            reason = f"audio too short: {seconds:.2f}s < min_audio_seconds {tx.min_audio_seconds}"
            jobs.finish(ctx.factory, job_id, worker, JobStatus.SKIPPED, reason)
            return Outcome(JobStatus.SKIPPED, {"reason": reason})
        from rdio_tasks.tones import whisper_input

        # Dispatch tones: the call's stored ones (the analyze task), else detected now.
        heard = whisper_input(samples, SAMPLE_RATE, call.tones, ctx.settings.tones)
        if heard.skip_reason is not None:  # a page and nothing else: no model time spent
            log.info("job %s call %s skipped: %s", job_id, call.id, heard.skip_reason)
            jobs.finish(ctx.factory, job_id, worker, JobStatus.SKIPPED, heard.skip_reason)
            return Outcome(JobStatus.SKIPPED, {"reason": heard.skip_reason})
        from rdio_tasks.asr import EngineConfig, get_engine

        resolved = tx.resolve(call.system_id, call.talkgroup)
        language = job.language or resolved.language
        engine = get_engine(EngineConfig.from_settings(tx, job.model or resolved.model, language))
        result = engine.transcribe(
            heard.audio,  # tones cut out; times mapped back below
            language=language,
            initial_prompt=resolved.initial_prompt,
            glossary=resolved.glossary,
            radio=call_radio_options(engine, resolved),
            priority=job.priority,
        )
        result = heard.restore(result, seconds)
    except AudioTooLongError as exc:
        # Too long is decided here only, on the decoded audio (a header can claim any length:
        # rdio_api.ingest.plan_job), decoded only to the limit.
        reason = (
            f"audio too long: {exc.decoded_seconds:.1f}s decoded > max_audio_seconds "
            f"{tx.max_audio_seconds} (decoding stopped there)"
        )
        log.warning("job %s call %s skipped: %s", job_id, call.id, reason)
        jobs.finish(ctx.factory, job_id, worker, JobStatus.SKIPPED, reason)
        return Outcome(JobStatus.SKIPPED, {"reason": reason})
    except SoftTimeLimitExceeded:
        reason = f"time limit of {tx.task_time_limit_seconds}s exceeded"
        jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, reason)
        return Outcome(JobStatus.FAILED, {"error": reason})
    except Exception as exc:
        return settle_failure(ctx, job_id, worker, exc)

    # The engine timed the model only (it got samples, not a path): count the decode too.
    processing_ms = round(result.processing_ms + decode_ms, 1)
    result = dataclasses.replace(
        result,
        processing_ms=processing_ms,
        real_time_factor=round(processing_ms / 1000 / max(result.audio_seconds, 1e-3), 4),
    )
    values = {
        "text": result.text,
        "segments": result.to_dict().get("segments"),
        "language": result.language,
        "language_probability": result.language_probability,
        "model": result.model,
        "compute_type": result.compute_type,
        "device": result.device,
        "confidence": result.confidence,
        "audio_seconds": result.audio_seconds,
        "processing_ms": result.processing_ms,
        "real_time_factor": result.real_time_factor,
        "result": {k: v for k, v in result.to_dict().items() if k not in ("segments", "text")},
    }
    stored = jobs.complete(ctx.factory, job_id, worker, values, ctx.settings)
    log.info(
        "job %s call %s: completed in %.0f ms (rtf %.3f)",
        job_id,
        call.id,
        result.processing_ms,
        result.real_time_factor,
    )
    return Outcome(JobStatus.COMPLETED if stored else "discarded", {"text": result.text})


def worker_id(hostname: str | None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}"


class TranscribeTask(Task):
    """Celery's own retry options for ``transcribe_call``: it retries on :class:`TransientError`
    with exponential backoff and full jitter. ``max_retries`` is None because the job's attempt
    counter in the database is the bound (it survives redeliveries and sweeper republishes)."""

    autoretry_for = (TransientError,)
    retry_backoff = RETRY_BACKOFF_FACTOR
    retry_jitter = True
    max_retries = None
    acks_late = True

    @property
    def retry_backoff_max(self) -> int:
        """The cap from the settings. Celery reads it once, when the worker builds the task; like
        the broker's visibility timeout derived from it, a change applies after a restart."""
        return context().settings.transcription.retry_backoff_max_seconds


@app.task(name="rdio_tasks.transcribe_call", bind=True, base=TranscribeTask)
def transcribe_call(self: TranscribeTask, job_id: int) -> dict[str, Any]:
    """Transcribe the call behind ``job_id``. Retries are bounded by the job's attempts in the DB."""
    ctx = context()
    beat = _heartbeat
    if beat is not None:  # its lease is renewed while this runs (a no-op until it is claimed)
        beat.track(job_id)
    try:
        outcome = run_job(ctx, job_id, worker_id(self.request.hostname))
    except TransientError:
        if beat is not None:
            beat.failed()
        raise
    except Exception as exc:  # outside a claimed job: the database down while claiming or storing
        if beat is not None:
            beat.failed()
        if classify(exc) is ErrorKind.TRANSIENT:
            raise TransientError(describe(exc)) from exc
        raise
    finally:
        if beat is not None:
            beat.untrack(job_id)
    if beat is not None and outcome.status in (JobStatus.COMPLETED, JobStatus.SKIPPED):
        beat.done()
    elif beat is not None and outcome.status == JobStatus.FAILED:
        beat.failed()
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return {"job_id": job_id, "status": outcome.status, **outcome.detail}


@signals.worker_ready.connect
def _sweep_fetch_spool(**_: Any) -> None:
    """A worker that fetches audio (no shared disk) removes the copies a killed run left behind;
    with a shared disk the API's orphan sweep does it."""
    ctx = context()
    if can_fetch(ctx.settings.worker):
        from rdio_core.orphans import sweep_temp_files

        removed = sweep_temp_files(ctx.store, ctx.settings.storage.orphan_grace_seconds)
        log.log(logging.INFO if removed else logging.DEBUG, "removed %d stale fetched audio files", removed)


#: This process's heartbeat (rdio_core.workers): renews its jobs' leases, writes its registry row.
_heartbeat: workers.Heartbeat | None = None
#: The Celery node name (``-n``), learnt in the main process before any fork.
_node_name: str | None = None
#: The device the preloaded model runs on ("auto" resolved), for the registry row.
_loaded_device: str | None = None


def _start_heartbeat() -> None:
    global _heartbeat
    if _heartbeat is not None:
        return
    ctx = context()
    tx = ctx.settings.transcription
    gpu = consumes_gpu_queue()
    queues = sorted(app.amqp.queues.consume_from or ["gpu"])
    identity = workers.Identity(
        name=worker_id(_node_name),
        queues=queues,
        model=tx.model if gpu else None,
        device=(_loaded_device or tx.device) if gpu else None,
    )
    lease = lambda: context().settings.transcription.lease_seconds  # noqa: E731 - follows reloads
    _heartbeat = workers.Heartbeat(ctx.factory, identity, lease, tx.heartbeat_seconds).start()
    log.info("worker %s: heartbeat every %ss, leases of %ss", identity.name, tx.heartbeat_seconds, lease())


@signals.worker_process_init.connect
def _preload_prefork_child(**_: Any) -> None:
    """Prefork pool: load the model in each child, after the fork (never in the parent)."""
    _start_heartbeat()
    _preload()


@signals.worker_init.connect
def _preload_threads(sender: Any = None, **_: Any) -> None:
    """Threads/solo pool (the default): the worker process is the one that runs tasks and nothing
    forks after this, so the model is loaded here, before the first message is taken."""
    global _node_name
    _node_name = getattr(sender, "hostname", None)
    pool = getattr(sender, "pool_cls", "") if sender is not None else ""
    name = (
        pool
        if isinstance(pool, str)
        else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    )
    if "thread" in name or "solo" in name:
        # The model first: a registry row means a worker that can take a call now, which is what
        # `rdio-api up` waits for before saying it is up and what /ready reports.
        _preload()
        _start_heartbeat()


@signals.worker_shutdown.connect
@signals.worker_process_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    """A clean stop marks the registry row stopped: only a silent, unstopped worker is offline."""
    if _heartbeat is not None:
        _heartbeat.stop()


def consumes_gpu_queue() -> bool:
    """Whether this worker takes transcriptions: ``-Q gpu`` (or no -Q, gpu being the default
    queue). A worker started with ``-Q alerts`` only sends alerts and must not spend a minute and
    a gigabyte loading Whisper."""
    selected = app.amqp.queues.consume_from
    return not selected or "gpu" in selected


def _preload() -> None:
    if os.environ.get("RDIO_WORKER_PRELOAD", "1") in ("0", "false", "no"):
        return
    if not consumes_gpu_queue():
        log.info("worker %s: not on the gpu queue, no model loaded", os.getpid())
        return
    ctx = context()
    if not ctx.settings.transcription.enabled:
        return
    try:
        from rdio_tasks.asr import EngineConfig, get_engine

        engine = get_engine(EngineConfig.from_settings(ctx.settings.transcription))
        global _loaded_device
        _loaded_device = engine.device
        if _heartbeat is not None:  # "auto" resolved: the registry shows cpu or cuda
            _heartbeat.identity.device = engine.device
        log.info("worker %s: model %s loaded and warm", os.getpid(), ctx.settings.transcription.model)
    except Exception:  # a bad model is reported per job with a clear error, not by killing the pool
        log.exception("worker %s: could not preload model %s", os.getpid(), ctx.settings.transcription.model)
