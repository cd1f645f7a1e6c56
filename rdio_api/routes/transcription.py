"""Transcription job API: create (re-)transcriptions, poll jobs and queue status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rdio_api.auth import read_access, require
from rdio_api.routes.calls import get_session, iso, load_call
from rdio_api.state import AppState, get_state
from rdio_core.models import JobStatus, TranscriptionJob, utcnow
from rdio_core.settings import ApiKey
from rdio_tasks import jobs

router = APIRouter(tags=["transcription"])


class JobRequest(BaseModel):
    call_id: int
    priority: int = Field(3, ge=1, le=5, description="1 = most urgent, 5 = least")
    model: str | None = Field(None, max_length=200)
    language: str | None = Field(None, max_length=16)


def job_dict(job: TranscriptionJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "call_id": job.call_id,
        "status": job.status,
        "attempts": job.attempts,
        "priority": job.priority,
        "worker": job.worker,
        "model": job.model,
        "language": job.language,
        "language_probability": job.language_probability,
        "compute_type": job.compute_type,
        "device": job.device,
        "text": job.text,
        "confidence": job.confidence,
        "segments": job.segments,
        "result": job.result,
        "audio_seconds": job.audio_seconds,
        "processing_ms": job.processing_ms,
        "real_time_factor": job.real_time_factor,
        "error": job.error,
        "created_at": iso(job.created_at),
        "queued_at": iso(job.queued_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "updated_at": iso(job.updated_at),
    }


@router.post("/api/transcription/jobs", status_code=202)
def create_job(
    body: JobRequest,
    key: ApiKey | None = Depends(require("admin", "upload")),
    state: AppState = Depends(get_state),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    if not state.settings.transcription.enabled:
        raise HTTPException(503, "Transcription is disabled (transcription.enabled: false)")
    load_call(session, body.call_id, key)
    job = jobs.create_job(session, body.call_id, body.priority, body.model, body.language)
    session.commit()
    dispatcher = state.extras.get("dispatcher")
    if dispatcher is not None:
        dispatcher.publish_later([(job.id, job.priority)])
    return job_dict(job)


@router.get("/api/transcription/jobs/{job_id}")
def get_job(
    job_id: int, key: ApiKey | None = Depends(read_access), session: Session = Depends(get_session)
) -> dict[str, Any]:
    job = session.get(TranscriptionJob, job_id)
    if job is None:
        raise HTTPException(404, f"Job {job_id} not found")
    load_call(session, job.call_id, key)  # enforces the key's system scope
    return job_dict(job)


@router.get("/api/calls/{call_id}/transcription")
def call_transcription(
    call_id: int, key: ApiKey | None = Depends(read_access), session: Session = Depends(get_session)
) -> dict[str, Any]:
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
    return {
        "call_id": call_id,
        "status": completed.status if completed else latest.status,
        "transcript": job_dict(completed) if completed else None,
        "latest_job": job_dict(latest),
        "history": [{"id": j.id, "status": j.status, "finished_at": iso(j.finished_at)} for j in all_jobs],
    }


@router.get("/api/transcription/queue/status")
def queue_status(
    _: ApiKey | None = Depends(read_access),
    state: AppState = Depends(get_state),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    counts = jobs.status_counts(session)
    now = utcnow()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    completed_today = session.execute(
        select(func.count())
        .select_from(TranscriptionJob)
        .where(TranscriptionJob.status == JobStatus.COMPLETED, TranscriptionJob.finished_at >= day_start)
    ).scalar_one()
    mean_ms, mean_rtf, done_hour = session.execute(
        select(
            func.avg(TranscriptionJob.processing_ms),
            func.avg(TranscriptionJob.real_time_factor),
            func.count(),
        ).where(
            TranscriptionJob.status == JobStatus.COMPLETED,
            TranscriptionJob.finished_at >= now - timedelta(hours=1),
        )
    ).one()
    dispatcher = state.extras.get("dispatcher")
    return {
        "enabled": state.settings.transcription.enabled,
        **{status.value: counts.get(status.value, 0) for status in JobStatus},
        "completed_today": completed_today,
        "completed_last_hour": done_hour,
        "broker_queue_depth": dispatcher.broker_depth() if dispatcher else None,
        "active_workers": dispatcher.active_workers() if dispatcher else None,
        "mean_processing_ms_last_hour": round(mean_ms, 1) if mean_ms is not None else None,
        "mean_real_time_factor_last_hour": round(mean_rtf, 4) if mean_rtf is not None else None,
        "last_sweep": dispatcher.last_sweep if dispatcher else None,
    }
