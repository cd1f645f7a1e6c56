"""``transcribe_call``: one call's transcription, idempotent and safe to redeliver."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval

from rdio_core.models import JobStatus
from rdio_tasks import jobs
from rdio_tasks.audio_decode import decode_audio
from rdio_tasks.celery_app import app
from rdio_tasks.context import WorkerContext, context
from rdio_tasks.errors import AudioTooLongError, PermanentError

log = logging.getLogger(__name__)

#: The rate Whisper models take (and ``decode_audio``'s default).
SAMPLE_RATE = 16000


class TransientError(Exception):
    """Worth retrying: database or broker hiccup, CUDA out of memory, model load timeout."""


@dataclass
class Outcome:
    status: str
    detail: dict[str, Any] = field(default_factory=dict)
    retry_in: float | None = None


def engine_config(ctx: WorkerContext, model: str | None = None, language: str | None = None):  # type: ignore[no-untyped-def]
    from rdio_tasks.asr import EngineConfig

    tx = ctx.settings.transcription
    return EngineConfig(
        model=model or tx.model,
        device=tx.device,
        compute_type=tx.compute_type,
        models_dir=tx.models_dir,
        batch_size=tx.batch_size,
        language=language or tx.language,
        vad_onset=tx.vad_onset,
        vad_offset=tx.vad_offset,
        radio=dict(tx.radio),
        cross_call_batching=tx.batch_size > 1,
        max_batch_wait_ms=tx.max_batch_wait_ms,
    )


def call_radio_options(engine, resolved):  # type: ignore[no-untyped-def]
    """The engine's radio options with this call's word replacements (None: plain mode)."""
    base = engine.config.radio
    if base is None:
        return None
    if not resolved.replacements:
        return base
    return dataclasses.replace(base, replacements=tuple(resolved.replacements) + tuple(base.replacements))


def run_job(ctx: WorkerContext, job_id: int, worker: str) -> Outcome:
    """Claim, transcribe and store one job; permanent problems end it, transient ones raise."""
    tx = ctx.settings.transcription
    claim = jobs.claim(ctx.factory, job_id, worker, tx.lease_seconds, tx.max_attempts)
    if claim.outcome == "busy":
        log.info("job %s: another worker holds it; checking again in %.0fs", job_id, claim.retry_in)
        return Outcome("busy", retry_in=claim.retry_in)
    if claim.outcome != "claimed":
        log.info("job %s: nothing to do (%s)", job_id, claim.outcome)
        return Outcome(claim.outcome)
    job, call = claim.job, claim.call
    assert job is not None and call is not None
    log.info("job %s call %s: attempt %s on %s", job_id, call.id, job.attempts, worker)

    path = ctx.store.absolute(call.audio_path)
    if not path.is_file():
        jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, f"audio file missing: {call.audio_path}")
        return Outcome("failed")
    try:
        decode_started = time.perf_counter()
        samples = decode_audio(path, SAMPLE_RATE, max_seconds=tx.max_audio_seconds)
        decode_ms = (time.perf_counter() - decode_started) * 1000
        seconds = samples.size / SAMPLE_RATE
        if seconds < tx.min_audio_seconds:  # skipped before any model time is spent
            reason = f"audio too short: {seconds:.2f}s < min_audio_seconds {tx.min_audio_seconds}"
            jobs.finish(ctx.factory, job_id, worker, JobStatus.SKIPPED, reason)
            return Outcome("skipped", {"reason": reason})
        from rdio_tasks.asr import get_engine

        resolved = tx.resolve(call.system_id, call.talkgroup)
        language = job.language or resolved.language
        engine = get_engine(engine_config(ctx, job.model or resolved.model, language))
        result = engine.transcribe(
            samples,
            language=language,
            initial_prompt=resolved.initial_prompt,
            radio=call_radio_options(engine, resolved),
        )
    except AudioTooLongError as exc:
        # The API skips a call whose header says it is too long; one whose header says nothing
        # (FLAC total_samples=0, a WAV with a bogus size) is caught here, decoded only to the limit.
        reason = (
            f"audio too long: {exc.decoded_seconds:.1f}s decoded > max_audio_seconds "
            f"{tx.max_audio_seconds} (decoding stopped there)"
        )
        log.warning("job %s call %s skipped: %s", job_id, call.id, reason)
        jobs.finish(ctx.factory, job_id, worker, JobStatus.SKIPPED, reason)
        return Outcome("skipped", {"reason": reason})
    except PermanentError as exc:
        log.warning("job %s call %s failed: %s", job_id, call.id, exc)
        jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, str(exc))
        return Outcome("failed", {"error": str(exc)})
    except SoftTimeLimitExceeded:
        reason = f"time limit of {tx.task_time_limit_seconds}s exceeded"
        jobs.finish(ctx.factory, job_id, worker, JobStatus.FAILED, reason)
        return Outcome("failed", {"error": reason})
    except Exception as exc:  # transient or unknown: retry, bounded by the attempts counter
        log.warning("job %s call %s: transient error %s: %s", job_id, call.id, type(exc).__name__, exc)
        jobs.release(ctx.factory, job_id, worker, f"{type(exc).__name__}: {exc}")
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc

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
    stored = jobs.complete(ctx.factory, job_id, worker, values)
    log.info(
        "job %s call %s: completed in %.0f ms (rtf %.3f)",
        job_id,
        call.id,
        result.processing_ms,
        result.real_time_factor,
    )
    return Outcome("completed" if stored else "discarded", {"text": result.text})


def worker_id(hostname: str | None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}"


@app.task(name="rdio_tasks.transcribe_call", bind=True, max_retries=None, acks_late=True)
def transcribe_call(self, job_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Transcribe the call behind ``job_id``. Retries are bounded by the job's attempts in the DB."""
    ctx = context()
    try:
        outcome = run_job(ctx, job_id, worker_id(self.request.hostname))
    except TransientError as exc:
        tx = ctx.settings.transcription
        countdown = get_exponential_backoff_interval(
            factor=2, retries=self.request.retries, maximum=tx.retry_backoff_max_seconds, full_jitter=True
        )
        raise self.retry(exc=exc, countdown=max(1, countdown)) from exc
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return {"job_id": job_id, "status": outcome.status, **outcome.detail}


@signals.worker_process_init.connect
def _preload_prefork_child(**_: Any) -> None:
    """Prefork pool: load the model in each child, after the fork (never in the parent)."""
    _preload()


@signals.worker_init.connect
def _preload_threads(sender: Any = None, **_: Any) -> None:
    """Threads/solo pool (the default): the worker process is the one that runs tasks and nothing
    forks after this, so the model is loaded here, before the first message is taken."""
    pool = getattr(sender, "pool_cls", "") if sender is not None else ""
    name = (
        pool
        if isinstance(pool, str)
        else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    )
    if "thread" in name or "solo" in name:
        _preload()


def _preload() -> None:
    if os.environ.get("RDIO_WORKER_PRELOAD", "1") in ("0", "false", "no"):
        return
    ctx = context()
    if not ctx.settings.transcription.enabled:
        return
    try:
        from rdio_tasks.asr import get_engine

        get_engine(engine_config(ctx))
        log.info("worker %s: model %s loaded and warm", os.getpid(), ctx.settings.transcription.model)
    except Exception:  # a bad model is reported per job with a clear error, not by killing the pool
        log.exception("worker %s: could not preload model %s", os.getpid(), ctx.settings.transcription.model)
