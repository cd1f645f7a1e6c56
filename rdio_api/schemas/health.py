"""Liveness, readiness, transcription health and the workers' heartbeats."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rdio_api.schemas.base import Rows, UtcTime


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ok", "unavailable"])
    checks: dict[str, str] = Field(examples=[{"database": "ok", "broker": "ok"}])


class HealthCheck(BaseModel):
    """One alert condition of the design plan: the measured value against its line."""

    ok: bool
    value: float | None = Field(description="the measurement; null when there is nothing to measure yet")
    threshold: float
    detail: str


class TranscriptionHealth(BaseModel):
    """``GET /api/health/transcription``: ``degraded`` when any check is not ok."""

    status: Literal["healthy", "degraded"]
    checks: dict[str, HealthCheck] = Field(
        description="queue_depth, success_rate, processing_ratio, workers_offline, disk_free_bytes, spool"
    )


class WorkerOut(Rows):
    """A worker process as its heartbeat last described it (rdio_core.workers)."""

    name: str = Field(description="Celery node name and pid, as in a job's `worker`")
    host: str
    pid: int
    queues: list[str]
    model: str | None
    device: str | None
    started_at: UtcTime
    last_heartbeat_at: UtcTime
    stopped_at: UtcTime | None
    state: Literal["live", "late", "offline", "stopped"] = Field(
        description="live: heard within 3 heartbeats; offline: silent past health.worker_offline_seconds"
    )
    current_jobs: list[int]
    jobs_done: int
    failures: int


class WorkerList(BaseModel):
    workers: list[WorkerOut]
