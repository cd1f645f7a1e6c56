"""``transcribe_call``: one call's transcription, idempotent and safe to redeliver.

Failures are sorted once, by :func:`rdio_tasks.errors.classify`: a transient one hands the job back
(``queued``) and raises :class:`TransientError`, which Celery's ``autoretry_for`` turns into a retry
with exponential backoff and full jitter (rdio_tasks.task_base, capped by
``transcription.retry_backoff_max_seconds``); a permanent one or a bug ends the job ``failed`` with
the reason, at once. Retries are bounded by the job's attempt counter in the database, not by
Celery: a redelivered or republished message claims the same row, and a claim past
``max_attempts`` ends the job.

:func:`run_job` is a claim and a few small steps (:func:`check_audio`, :func:`decode_call`,
:func:`speech_of`, :func:`run_engine`, :func:`store_result`); a step that ends the job early
raises :class:`EndJob`, and :func:`finish_job` is the one place that records the end.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

from rdio_core import jobs, workers
from rdio_core.models import Call, JobStatus, TranscriptionJob
from rdio_core.outbox import ClaimOutcome, Queue, TaskRef
from rdio_core.settings import ResolvedTranscription
from rdio_tasks.audio_decode import LENGTH_TOLERANCE_SECONDS, decode_audio
from rdio_tasks.audio_fetch import can_fetch, local_audio
from rdio_tasks.celery_app import app
from rdio_tasks.context import WorkerContext, context
from rdio_tasks.errors import AudioTooLongError, ErrorKind, TransientError, classify, describe
from rdio_tasks.task_base import RetryingTask

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from rdio_tasks.asr import WhisperXEngine
    from rdio_tasks.asr.result import TranscriptionResult
    from rdio_tasks.radio import RadioOptions
    from rdio_tasks.tones.cut import WhisperInput

log = logging.getLogger(__name__)

#: The rate Whisper models take (and ``decode_audio``'s default).
SAMPLE_RATE = 16000


@dataclass
class Outcome:
    """What one run of the task did: a job status, a claim outcome, or ``discarded``."""

    status: str
    detail: dict[str, Any] = field(default_factory=dict)
    retry_in: float | None = None


class EndJob(Exception):
    """Raised by a step of :func:`run_job` to end the job, skipped or failed, with a reason (no
    retry); :func:`finish_job` records it."""

    def __init__(self, status: JobStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def finish_job(ctx: WorkerContext, job_id: int, worker: str, end: EndJob) -> Outcome:
    """The one place a claimed job ends without a transcript."""
    jobs.finish(ctx.factory, job_id, worker, end.status, end.reason)
    ctx.pipeline.job_ended()
    key = "error" if end.status == JobStatus.FAILED else "reason"
    return Outcome(end.status, {key: end.reason})


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
    return finish_job(ctx, job_id, worker, EndJob(JobStatus.FAILED, reason))


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
    try:
        return transcribe_claimed(ctx, job, call, worker)
    except EndJob as end:
        log.log(
            logging.WARNING if end.status == JobStatus.FAILED else logging.INFO,
            "job %s call %s %s: %s",
            job_id,
            call.id,
            end.status,
            end.reason,
        )
        return finish_job(ctx, job_id, worker, end)


def transcribe_claimed(ctx: WorkerContext, job: TranscriptionJob, call: Call, worker: str) -> Outcome:
    """The steps of a claimed job; each raises :class:`EndJob` to stop it early."""
    tx = ctx.settings.transcription
    check_audio(ctx, call)
    try:
        decode_started = time.perf_counter()
        samples = decode_call(ctx, call)
        decode_ms = (time.perf_counter() - decode_started) * 1000
        seconds = samples.size / SAMPLE_RATE
        jobs.record_duration(ctx.factory, call, seconds, LENGTH_TOLERANCE_SECONDS)
        heard = speech_of(ctx, call, samples, seconds)
        result = heard.restore(run_engine(ctx, job, call, heard.audio), seconds)
    except EndJob:
        raise
    except AudioTooLongError as exc:
        # Too long is decided here only, on the decoded audio (a header can claim any length:
        # rdio_api.ingest.plan_job), decoded only to the limit.
        raise EndJob(
            JobStatus.SKIPPED,
            f"audio too long: {exc.decoded_seconds:.1f}s decoded > max_audio_seconds "
            f"{tx.max_audio_seconds} (decoding stopped there)",
        ) from exc
    except SoftTimeLimitExceeded as exc:
        raise EndJob(JobStatus.FAILED, f"time limit of {tx.task_time_limit_seconds}s exceeded") from exc
    except Exception as exc:
        return settle_failure(ctx, job.id, worker, exc)
    return store_result(ctx, job, call, worker, result, decode_ms)


def check_audio(ctx: WorkerContext, call: Call) -> None:
    """The call's audio is there to read (or can be fetched from the API)."""
    if call.audio_removed_at is not None:
        raise EndJob(JobStatus.FAILED, f"audio deleted by retention on {call.audio_removed_at:%Y-%m-%d}")
    if not ctx.store.absolute(call.audio_path).is_file() and not can_fetch(ctx.settings.worker):
        raise EndJob(JobStatus.FAILED, f"audio file missing: {call.audio_path}")


def decode_call(ctx: WorkerContext, call: Call) -> npt.NDArray[np.float32]:
    """The call's samples: the shared file, or (no shared disk) a copy fetched from the API and
    checked by sha256; decoded at most to ``max_audio_seconds``."""
    with local_audio(ctx.store, call, ctx.settings.worker) as path:
        return decode_audio(path, SAMPLE_RATE, max_seconds=ctx.settings.transcription.max_audio_seconds)


def speech_of(
    ctx: WorkerContext, call: Call, samples: npt.NDArray[np.float32], seconds: float
) -> WhisperInput:
    """What Whisper hears: the audio with dispatch tones cut out. Ends the job before any model time
    is spent when the call is too short or only tones."""
    tx = ctx.settings.transcription
    if seconds < tx.min_audio_seconds:
        raise EndJob(
            JobStatus.SKIPPED, f"audio too short: {seconds:.2f}s < min_audio_seconds {tx.min_audio_seconds}"
        )
    from rdio_tasks.tones import whisper_input

    # Dispatch tones: the call's stored ones (the analyze task), else detected now.
    heard = whisper_input(samples, SAMPLE_RATE, call.tones, ctx.settings.tones)
    if heard.skip_reason is not None:  # a page and nothing else
        raise EndJob(JobStatus.SKIPPED, heard.skip_reason)
    return heard


def run_engine(
    ctx: WorkerContext, job: TranscriptionJob, call: Call, audio: npt.NDArray[np.float32]
) -> TranscriptionResult:
    """Whisper on ``audio`` with the call's talkgroup settings (model, language, prompt, glossary)."""
    from rdio_tasks.asr import EngineConfig, get_engine

    tx = ctx.settings.transcription
    resolved = tx.resolve(call.system_id, call.talkgroup)
    language = job.language or resolved.language
    engine = get_engine(
        EngineConfig.from_settings(
            tx, job.model or resolved.model, language, TranscribeTask.worker.calls_at_once
        )
    )
    return engine.transcribe(
        audio,
        language=language,
        initial_prompt=resolved.initial_prompt,
        glossary=resolved.glossary,
        radio=call_radio_options(engine, resolved),
        priority=job.priority,
    )


def store_result(
    ctx: WorkerContext,
    job: TranscriptionJob,
    call: Call,
    worker: str,
    result: TranscriptionResult,
    decode_ms: float,
) -> Outcome:
    """Store the transcript and what follows it (rdio_core.pipeline), if this worker still owns the job."""
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
    stored = ctx.pipeline.store_transcript(job.id, worker, values)
    log.info(
        "job %s call %s: completed in %.0f ms (rtf %.3f)",
        job.id,
        call.id,
        result.processing_ms,
        result.real_time_factor,
    )
    return Outcome(JobStatus.COMPLETED if stored else "discarded", {"text": result.text})


def worker_id(hostname: str | None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerState:
    """What this worker process knows about itself, learnt from Celery's signals: its node name
    (``-n``, learnt in the main process before any fork), the device its preloaded model runs on
    ("auto" resolved), the calls it runs at once (``-c`` for a threads pool, else
    ``transcription.concurrency``; 1 in a solo pool or a prefork child), which size its batches,
    and its heartbeat (rdio_core.workers: renews its jobs' leases, writes its registry row). Held
    by :class:`TranscribeTask`; a forked child has its own copy."""

    node_name: str | None = None
    calls_at_once: int | None = None
    device: str | None = None
    heartbeat: workers.Heartbeat | None = None

    def start_heartbeat(self) -> None:
        if self.heartbeat is not None:
            return
        ctx = context()
        tx = ctx.settings.transcription
        gpu = consumes_gpu_queue()
        identity = workers.Identity(
            name=worker_id(self.node_name),
            queues=sorted(app.amqp.queues.consume_from or [Queue.GPU.value]),
            model=tx.model if gpu else None,
            device=(self.device or tx.device) if gpu else None,
        )
        lease = lambda: context().settings.transcription.lease_seconds  # noqa: E731 - follows reloads
        self.heartbeat = workers.Heartbeat(ctx.factory, identity, lease, tx.heartbeat_seconds).start()
        log.info(
            "worker %s: heartbeat every %ss, leases of %ss", identity.name, tx.heartbeat_seconds, lease()
        )

    def model_loaded(self, device: str) -> None:
        self.device = device
        if self.heartbeat is not None:  # "auto" resolved: the registry shows cpu or cuda
            self.heartbeat.identity.device = device

    def running(self, job_id: int) -> None:
        if self.heartbeat is not None:  # its lease is renewed while this runs (a no-op until claimed)
            self.heartbeat.track(job_id)

    def ran(self, job_id: int, status: str | None) -> None:
        """The job's run ended: ``status`` is its outcome, None when it raised."""
        beat = self.heartbeat
        if beat is None:
            return
        beat.untrack(job_id)
        if status in (JobStatus.COMPLETED, JobStatus.SKIPPED):
            beat.done()
        elif status is None or status == JobStatus.FAILED:
            beat.failed()

    def stop(self) -> None:
        """A clean stop marks the registry row stopped: only a silent, unstopped worker is offline."""
        if self.heartbeat is not None:
            self.heartbeat.stop()


class TranscribeTask(RetryingTask):
    """``transcribe_call``'s retries (rdio_tasks.task_base) and the worker's state."""

    worker: ClassVar[WorkerState] = WorkerState()

    @property
    def retry_backoff_max(self) -> int:  # type: ignore[override]
        """The cap from the settings (read once, when the worker builds the task)."""
        return context().settings.transcription.retry_backoff_max_seconds


@app.task(name=TaskRef.TRANSCRIBE.task_name, bind=True, base=TranscribeTask)
def transcribe_call(self: TranscribeTask, job_id: int) -> dict[str, Any]:
    """Transcribe the call behind ``job_id``. Retries are bounded by the job's attempts in the DB."""
    ctx = context()
    self.worker.running(job_id)
    status: str | None = None
    try:
        outcome = run_job(ctx, job_id, worker_id(self.request.hostname))
        status = outcome.status
    except TransientError:
        raise
    except Exception as exc:  # outside a claimed job: the database down while claiming or storing
        if classify(exc) is ErrorKind.TRANSIENT:
            raise TransientError(describe(exc)) from exc
        raise
    finally:
        self.worker.ran(job_id, status)
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


@signals.worker_process_init.connect
def _preload_prefork_child(**_: Any) -> None:
    """Prefork pool: load the model in each child, after the fork (never in the parent). A child
    runs one call at a time: nothing to batch across."""
    TranscribeTask.worker.calls_at_once = 1
    TranscribeTask.worker.start_heartbeat()
    _preload()


@signals.worker_init.connect
def _preload_threads(sender: Any = None, **_: Any) -> None:
    """Threads/solo pool (the default): the worker process is the one that runs tasks and nothing
    forks after this, so the model is loaded here, before the first message is taken."""
    TranscribeTask.worker.node_name = getattr(sender, "hostname", None)
    _warn_tones_unconsumed()
    name = pool_name(sender)
    if "thread" in name or "solo" in name:
        TranscribeTask.worker.calls_at_once = calls_at_once(sender)
        # The model first: a registry row means a worker that can take a call now, which is what
        # `rdio-api up` waits for before saying it is up and what /ready reports.
        _preload()
        TranscribeTask.worker.start_heartbeat()


def pool_name(sender: Any) -> str:
    """The worker's pool class as a dotted name (``-P``, or celeryconfig's ``worker_pool``)."""
    pool = getattr(sender, "pool_cls", "") if sender is not None else ""
    if isinstance(pool, str):
        return pool
    return f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"


def calls_at_once(sender: Any) -> int | None:
    """Calls a threads or solo worker runs at once: its pool's size (``-c`` wins over
    ``transcription.concurrency``), 1 for solo; None when unknown (the setting holds)."""
    if "solo" in pool_name(sender):
        return 1
    size = getattr(sender, "concurrency", None)
    return size if isinstance(size, int) and size > 0 else None


@signals.worker_shutdown.connect
@signals.worker_process_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    TranscribeTask.worker.stop()


def consumes_gpu_queue() -> bool:
    """Whether this worker takes transcriptions: ``-Q gpu`` (or no -Q, gpu being the default
    queue). A worker started with ``-Q alerts,tones`` only analyses tones and sends alerts and must
    not spend a minute and a gigabyte loading Whisper."""
    selected = app.amqp.queues.consume_from
    return not selected or Queue.GPU.value in selected


def _warn_tones_unconsumed() -> None:
    """Tone analysis moved from the ``alerts`` queue to its own ``tones`` queue: a worker started as
    before (``-Q alerts``) says so, instead of tone alerts silently waiting."""
    selected = app.amqp.queues.consume_from or {}
    if Queue.ALERTS.value in selected and Queue.TONES.value not in selected:
        log.warning(
            "this worker consumes %r but not %r: tone analysis waits for a worker with -Q %s,%s",
            Queue.ALERTS.value,
            Queue.TONES.value,
            Queue.ALERTS.value,
            Queue.TONES.value,
        )


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

        engine = get_engine(
            EngineConfig.from_settings(
                ctx.settings.transcription, concurrency=TranscribeTask.worker.calls_at_once
            )
        )
        TranscribeTask.worker.model_loaded(engine.device)
        log.info(
            "worker %s: model %s loaded and warm; %s calls at once, batches of up to %d",
            os.getpid(),
            ctx.settings.transcription.model,
            engine.config.concurrency,
            engine.batch_size,
        )
    except Exception:  # a bad model is reported per job with a clear error, not by killing the pool
        log.exception("worker %s: could not preload model %s", os.getpid(), ctx.settings.transcription.model)
