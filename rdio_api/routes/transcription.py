"""Transcription job API: create (re-)transcriptions, poll jobs and queue status."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from rdio_api import transcription_health
from rdio_api.deps import JobKey, ReadKey, SessionDep, StateDep, load_call, restrict_to_key
from rdio_api.responses import AUTH, INVALID, NOT_FOUND, TOO_LARGE, TRANSCRIPTION_OFF
from rdio_api.schemas import (
    CallTranscription,
    JobOut,
    JobRequest,
    JobSummary,
    QueueStatus,
    WorkerList,
)
from rdio_api.state import AppState
from rdio_core import jobs, workers
from rdio_core.bounds import Id
from rdio_core.models import Call, JobStatus, TranscriptionJob, utcnow
from rdio_core.settings import ALL, ApiKey

router = APIRouter(tags=["transcription"])

# A job request is under 300 bytes; the body is read only after the key is checked, up to this.
MAX_JOB_BODY = 16_384


async def _job_request(request: Request) -> JobRequest:
    """The body, read after the key was checked and never past MAX_JOB_BODY: declared as a FastAPI
    body parameter it would be read whole, before any dependency, from anyone who connects."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JOB_BODY:
            raise HTTPException(413, f"Request body over {MAX_JOB_BODY} bytes")
    try:
        return JobRequest.model_validate_json(bytes(data))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


_JOB_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JobRequest.model_json_schema()}},
    }
}


@router.post(
    "/api/transcription/jobs",
    status_code=202,
    response_model=JobOut,
    openapi_extra=_JOB_BODY_DOC,
    responses={**AUTH, **NOT_FOUND, **TOO_LARGE, **INVALID, **TRANSCRIPTION_OFF},
)
async def create_job(request: Request, key: JobKey, state: StateDep, session: SessionDep) -> JobOut:
    body = await _job_request(request)
    return await run_in_threadpool(_create_job, body, key, state, session)


def _create_job(body: JobRequest, key: ApiKey | None, state: AppState, session: Session) -> JobOut:
    if not state.settings.transcription.enabled:
        raise HTTPException(503, "Transcription is disabled (transcription.enabled: false)")
    load_call(session, body.call_id, key)
    job = jobs.create_job(session, body.call_id, body.priority, body.model, body.language)
    session.commit()
    if state.pipeline is not None:
        state.pipeline.jobs_committed([(job.id, job.priority)])
    return JobOut.model_validate(job)


@router.get(
    "/api/transcription/jobs/{job_id}", response_model=JobOut, responses={**AUTH, **NOT_FOUND, **INVALID}
)
def get_job(job_id: Id, key: ReadKey, session: SessionDep) -> JobOut:
    job = session.get(TranscriptionJob, job_id)
    if job is None:
        raise HTTPException(404, f"Job {job_id} not found")
    load_call(session, job.call_id, key)  # enforces the key's system scope
    return JobOut.model_validate(job)


@router.get(
    "/api/calls/{call_id}/transcription",
    response_model=CallTranscription,
    responses={**AUTH, **NOT_FOUND, **INVALID},
)
def call_transcription(call_id: Id, key: ReadKey, session: SessionDep) -> CallTranscription:
    load_call(session, call_id, key)
    all_jobs = list(
        session.execute(
            select(TranscriptionJob)
            .where(TranscriptionJob.call_id == call_id)
            .order_by(TranscriptionJob.id.desc())
        ).scalars()
    )
    if not all_jobs:
        raise HTTPException(404, f"Call {call_id} has no transcription job")
    completed = next((j for j in all_jobs if j.status == JobStatus.COMPLETED), None)
    latest = all_jobs[0]
    return CallTranscription(
        call_id=call_id,
        status=JobStatus((completed or latest).status),
        transcript=JobOut.model_validate(completed) if completed else None,
        latest_job=JobOut.model_validate(latest),
        history=[JobSummary.model_validate(j) for j in all_jobs],
    )


def _visible_jobs(stmt: Select, key: ApiKey | None) -> Select:
    """Limit a job query to the calls the key may see (the same rule as the call routes). A key for
    every system needs no join."""
    if key is None or key.systems == ALL:
        return stmt
    return restrict_to_key(stmt.join(Call, Call.id == TranscriptionJob.call_id), key)


@router.get("/api/transcription/queue/status", response_model=QueueStatus, responses=AUTH)
def queue_status(key: ReadKey, state: StateDep, session: SessionDep) -> QueueStatus:
    """Job counts and speed. A key limited to some systems/talkgroups counts only their jobs, and
    gets null for the broker's figures (queue depth, workers, last sweep), which span every system.
    ``active_workers`` counts the registry's live gpu workers (heard within three heartbeats): no
    worker is pinged (Celery's ping waited its whole 1 s timeout on every request)."""
    restricted = key is not None and key.systems != ALL
    if restricted:
        by_status = select(TranscriptionJob.status, func.count()).group_by(TranscriptionJob.status)
        counts = dict(session.execute(_visible_jobs(by_status, key)).tuples().all())
    else:
        counts = jobs.status_counts(session)
    now = utcnow()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    completed_today = session.execute(
        _visible_jobs(
            select(func.count())
            .select_from(TranscriptionJob)
            .where(TranscriptionJob.status == JobStatus.COMPLETED, TranscriptionJob.finished_at >= day_start),
            key,
        )
    ).scalar_one()
    mean_ms, mean_rtf, done_hour = session.execute(
        _visible_jobs(
            select(
                func.avg(TranscriptionJob.processing_ms),
                func.avg(TranscriptionJob.real_time_factor),
                func.count(),
            ).where(
                TranscriptionJob.status == JobStatus.COMPLETED,
                TranscriptionJob.finished_at >= now - timedelta(hours=1),
            ),
            key,
        )
    ).one()
    publisher = None if restricted or state.pipeline is None else state.pipeline.jobs
    broker = publisher.broker_counts() if publisher else None
    active = None
    if not restricted:
        fresh = transcription_health.fresh_seconds(state.settings)
        active = workers.active_count(workers.list_workers(session), now, fresh)
    return QueueStatus(
        enabled=state.settings.transcription.enabled,
        **{status.value: counts.get(status.value, 0) for status in JobStatus},
        by_priority=jobs.waiting_by_priority(session, lambda stmt: _visible_jobs(stmt, key)),
        defer_backlog_depth=state.settings.transcription.defer_backlog_depth,
        completed_today=completed_today,
        completed_last_hour=done_hour,
        broker_queue_depth=broker.waiting if broker else None,
        broker_reserved=broker.reserved if broker else None,
        active_workers=active,
        mean_processing_ms_last_hour=round(mean_ms, 1) if mean_ms is not None else None,
        mean_real_time_factor_last_hour=round(mean_rtf, 4) if mean_rtf is not None else None,
        last_sweep=publisher.last_sweep if publisher else None,
    )


@router.get("/api/transcription/workers", response_model=WorkerList, responses=AUTH)
def list_workers(key: ReadKey, state: StateDep, session: SessionDep) -> WorkerList:
    """The worker registry (rdio_core.workers), most recently heard first: what each worker process
    runs and when its heartbeat was last heard. Stopped workers stay listed until a restart of the
    same node replaces them or a day of silence."""
    now = utcnow()
    return WorkerList(
        workers=[
            transcription_health.worker_out(w, now, state.settings) for w in workers.list_workers(session)
        ]
    )
