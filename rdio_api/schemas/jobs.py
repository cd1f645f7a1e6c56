"""Transcription jobs, the queue's state and backfill runs, as the transcription routes answer them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rdio_api.schemas.base import PRINTABLE, Rows, UtcTime
from rdio_core.bounds import Id, Time
from rdio_core.models import JobStatus


class JobRequest(BaseModel):
    """The body of ``POST /api/transcription/jobs``."""

    call_id: Id
    priority: int = Field(3, ge=1, le=5, description="1 = most urgent, 5 = least")
    model: str | None = Field(None, max_length=200, pattern=PRINTABLE)
    language: str | None = Field(None, max_length=16, pattern=PRINTABLE)


class JobOut(Rows):
    """A transcription job, with its result once it has one."""

    id: int
    call_id: int
    status: JobStatus
    attempts: int
    priority: int
    worker: str | None
    model: str | None
    language: str | None
    language_probability: float | None
    compute_type: str | None
    device: str | None
    text: str | None
    confidence: float | None
    segments: list[Any] | None
    result: dict[str, Any] | None = Field(description="the engine's raw output, filters and notes")
    audio_seconds: float | None
    processing_ms: float | None
    real_time_factor: float | None
    error: str | None
    created_at: UtcTime
    queued_at: UtcTime | None
    started_at: UtcTime | None
    finished_at: UtcTime | None
    updated_at: UtcTime


class JobSummary(Rows):
    id: int
    status: JobStatus
    finished_at: UtcTime | None


class CallTranscription(BaseModel):
    """``GET /api/calls/{id}/transcription``: the transcript, the newest job and every job, newest first."""

    call_id: int
    status: JobStatus = Field(description="the completed job's status if any, else the newest job's")
    transcript: JobOut | None = Field(description="the completed job, if any")
    latest_job: JobOut
    history: list[JobSummary]


class QueueStatus(BaseModel):
    """Job counts per status (one field per JobStatus) and speed. The broker's figures are null for
    a key limited to some systems, and without a broker."""

    enabled: bool
    pending: int
    deferred: int = Field(
        description="held back while the backlog was deep (run when the queue drains), or a backfill's"
        " jobs beyond transcription.backfill_slots (run as the backfill's jobs end)"
    )
    queued: int
    processing: int
    completed: int
    failed: int
    skipped: int
    by_priority: dict[int, dict[str, int]] = Field(
        description="unfinished jobs per priority (1 = most urgent) and status: who waits for what"
    )
    defer_backlog_depth: int | None
    completed_today: int
    completed_last_hour: int
    broker_queue_depth: int | None = Field(description="messages in the gpu queue a worker can take now")
    broker_reserved: int | None = Field(
        description="gpu messages taken and not acknowledged: running, prefetched, retry countdowns, "
        "or a dead worker's until the broker's visibility timeout redelivers them"
    )
    active_workers: int | None
    mean_processing_ms_last_hour: float | None
    mean_real_time_factor_last_hour: float | None
    last_sweep: dict[str, Any] | None = Field(description="the sweeper's last pass ({} before the first)")


class BackfillIn(BaseModel):
    """The body of ``POST /api/transcription/backfill``: which historical calls to (re)transcribe."""

    model_config = ConfigDict(extra="forbid")

    since: Time | None = Field(None, description="Calls at or after this time (UTC if no offset)")
    until: Time | None = Field(None, description="Calls before this time")
    system: Id | None = None
    talkgroup: Id | None = None
    model: str | None = Field(None, max_length=200, pattern=PRINTABLE)
    only_missing: bool = Field(False, description="Only calls with no completed transcript")


class BackfillOut(BaseModel):
    """A backfill run: its jobs counted by status (``done`` = completed + failed + skipped)."""

    id: int
    resumed: bool = Field(False, description="The same request was made before: this continues it")
    queuing_finished: bool
    total: int
    done: int
    finished: bool
    counts: dict[str, int]
