"""SQLAlchemy 2 models: systems, talkgroups, calls, transcription jobs, units and transmissions.

Times are stored as timezone-naive UTC (portable across SQLite and PostgreSQL) and converted to
aware UTC at the API edge.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobStatus(enum.StrEnum):
    PENDING = "pending"  # created with the call, not yet handed to the broker
    # Held back while the backlog is deep (transcription.defer_backlog_depth); the sweeper makes it
    # pending again when the queue drains. Never claimed, never final.
    DEFERRED = "deferred"
    QUEUED = "queued"  # published to the broker
    PROCESSING = "processing"  # claimed by a worker under a lease
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class System(Base):
    __tablename__ = "systems"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Talkgroup(Base):
    __tablename__ = "talkgroups"
    __table_args__ = (UniqueConstraint("system_id", "talkgroup", name="uq_talkgroups_system_tg"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"))
    talkgroup: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200))
    tag: Mapped[str | None] = mapped_column(String(200))
    group: Mapped[str | None] = mapped_column("group_name", String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_system_tg_time", "system_id", "talkgroup", "date_time"),
        Index("ix_calls_date_time", "date_time"),
        # Retention's "audio still here and older than N days": a seek, not a scan of every old call.
        Index("ix_calls_audio_kept", "audio_removed_at", "date_time"),
        # A spooled upload is committed exactly once: the drain skips a key already stored.
        Index("ux_calls_ingest_key", "ingest_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id"))
    talkgroup: Mapped[int] = mapped_column(BigInteger)
    date_time: Mapped[datetime] = mapped_column(DateTime)
    source: Mapped[int | None] = mapped_column(BigInteger)
    frequency: Mapped[int | None] = mapped_column(BigInteger)
    frequencies: Mapped[list[Any] | None] = mapped_column(JSON)
    sources: Mapped[list[Any] | None] = mapped_column(JSON)
    patches: Mapped[list[Any] | None] = mapped_column(JSON)
    talkgroup_label: Mapped[str | None] = mapped_column(String(200))
    talkgroup_group: Mapped[str | None] = mapped_column(String(200))
    talkgroup_tag: Mapped[str | None] = mapped_column(String(200))
    talkgroup_name: Mapped[str | None] = mapped_column(String(200))
    system_label: Mapped[str | None] = mapped_column(String(200))
    talker_alias: Mapped[str | None] = mapped_column(String(200))
    site: Mapped[str | None] = mapped_column(String(100))
    audio_name: Mapped[str | None] = mapped_column(String(255))
    audio_type: Mapped[str | None] = mapped_column(String(100))
    audio_path: Mapped[str] = mapped_column(String(500), index=True)
    audio_sha256: Mapped[str] = mapped_column(String(64), index=True)
    audio_bytes: Mapped[int] = mapped_column(BigInteger)
    audio_mime: Mapped[str] = mapped_column(String(100))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    client_kind: Mapped[str] = mapped_column(String(40))
    key_name: Mapped[str | None] = mapped_column(String(200))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Dispatch tones found by the analyze task: None = not analysed yet, [] = analysed, none found.
    tones: Mapped[list[Any] | None] = mapped_column(JSON)
    analyzed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When retention deleted the audio file (retention.audio_days); the row and transcript stay.
    audio_removed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The upload's idempotency key (rdio_api.spool): NULL for calls stored before it existed.
    ingest_key: Mapped[str | None] = mapped_column(String(32))

    jobs: Mapped[list[TranscriptionJob]] = relationship(
        back_populates="call", order_by="TranscriptionJob.id", lazy="raise"
    )


class TranscriptionJob(Base):
    __tablename__ = "transcription_jobs"
    __table_args__ = (
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_status_priority_id", "status", "priority", "id"),  # release order (backfill)
        Index("ix_jobs_call", "call_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(16))
    language_probability: Mapped[float | None] = mapped_column(Float)
    compute_type: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    segments: Mapped[list[Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # raw output, filters, notes
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    processing_ms: Mapped[float | None] = mapped_column(Float)
    real_time_factor: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call] = relationship(back_populates="jobs", lazy="raise")


class Unit(Base):
    """A radio (unit id) of a system, as heard on calls. ``alias`` is the last alias learned from an
    upload (SDRTrunk's talkerAlias, a trunk-recorder srcList tag); an alias in ``units:`` of the
    config wins over it and is applied when read (rdio_core.units), so a config edit needs no write."""

    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("system_id", "unit", name="uq_units_system_unit"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"))
    unit: Mapped[int] = mapped_column(BigInteger)
    alias: Mapped[str | None] = mapped_column(String(200))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)


class CallTransmission(Base):
    """One transmission of a call: who keyed up, ``offset_seconds`` into the audio. Written with the
    call from its srcList / sources / source; the transcript is attributed to it when read."""

    __tablename__ = "call_transmissions"
    __table_args__ = (Index("ix_call_transmissions_unit", "unit", "call_id"),)

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    offset_seconds: Mapped[float] = mapped_column(Float)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[int | None] = mapped_column(BigInteger)
    tag: Mapped[str | None] = mapped_column(String(200))
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    origin: Mapped[str] = mapped_column(String(16))  # srcList | sources | source


class EventKind(enum.StrEnum):
    CALL_CREATED = "call.created"
    TRANSCRIPT_UPDATED = "transcript.updated"  # a job ended: completed, skipped or failed
    CALL_ANALYZED = "call.analyzed"  # dispatch tones found on the call (rdio_tasks.analyze)


class Event(Base):
    """The live feed's log: one row per call stored or transcript finished, written in the same
    transaction as the change. ``GET /api/events`` streams rows past a client's Last-Event-ID, so a
    client that reconnects, or an API process other than the one that took the upload (the worker
    writes its own rows), loses nothing; Redis pub/sub would drop whatever came while no one
    listened. Rows older than ``api.events_keep_hours`` are deleted."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
