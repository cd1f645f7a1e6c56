"""The JSON the read, job, search, health and event routes answer: one pydantic model per shape.

Each model is the single description of its shape: the routes declare it as ``response_model`` (so
``/docs`` and ``/openapi.json`` name every field), build their answers from ORM rows with it
(``from_attributes``), and the SSE stream serialises its ``data:`` with it. Field names and order
are the ones the API has always sent; ``UtcTime`` keeps the ``+00:00`` suffix it has always had
(pydantic alone would write ``Z``).

A call has two shapes. :class:`CallOut` is a list item: the fields bounded in size. :class:`CallDetail`
adds ``frequencies``, ``sources`` and ``meta``, which grow with a call's length (20 trunk-recorder
calls with 900 KB of meta each made a 31.7 MB list page) and are only on ``GET /api/calls/{id}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from rdio_core.bounds import Id, Time
from rdio_core.models import Call, JobStatus, TranscriptionJob
from rdio_core.units import Named, attribute, summarize


def _iso(value: datetime) -> str:
    """Rows hold naive UTC (portable across SQLite and PostgreSQL); the API shows aware UTC."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


UtcTime = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A stored time as ISO 8601 with ``+00:00``, e.g. ``2026-01-03T00:31:24.796000+00:00``."""


MAX_UNITS_SHOWN = 16
"""Radios a list item names: a trunk-recorder srcList of a long call can hold thousands, and list
pages are bounded in bytes (api.max_list_bytes); the call's detail has every transmission."""


class _Rows(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- calls ----------------------------------------------------------------------------------------


class UnitRef(BaseModel):
    """A radio heard on a call (list items: each radio once, in order of first key-up)."""

    unit: int
    alias: str | None = Field(description="configured alias, else the one the call carried, else learned")
    emergency: bool = Field(description="one of its transmissions on this call was flagged emergency")


class ToneOut(BaseModel):
    """A dispatch tone found in a call's audio, before transcription."""

    kind: str = Field(examples=["two_tone", "long", "hi_low", "dtmf"])
    frequencies: list[float] = Field(description="Hz, in the order they sounded")
    start: float = Field(description="seconds into the audio")
    end: float
    digits: str | None = Field(None, description="DTMF digits (dtmf only)")
    name: str | None = Field(None, description="the configured tone set it matched, if any")


def _tones(value: Any) -> Any:
    """Stored tones as shown; an element that does not read as a tone is left out, not a 500."""
    if not isinstance(value, list):
        return None
    kept = []
    for item in value:
        try:
            kept.append(ToneOut.model_validate(item))
        except ValueError:
            continue
    return kept


class CallOut(_Rows):
    """A call in a list (``/api/calls``, search results, ``call.created`` events)."""

    id: int
    system: int = Field(validation_alias="system_id")
    talkgroup: int
    date_time: UtcTime
    source: int | None
    frequency: int | None
    patches: list[Any] | None
    talkgroup_label: str | None
    talkgroup_group: str | None
    talkgroup_tag: str | None
    talkgroup_name: str | None
    system_label: str | None
    talker_alias: str | None
    site: str | None
    audio_name: str | None
    audio_type: str | None
    audio_path: str
    audio_sha256: str
    audio_bytes: int
    audio_mime: str
    audio_url: str = Field("", validate_default=True, description="this call's audio route")
    duration_seconds: float | None
    received_at: UtcTime
    client_kind: str
    key_name: str | None
    transcription_status: JobStatus | None = Field(
        None, description="the latest job's status: the completed one if any, else the newest"
    )
    transcript: str | None = Field(None, description="the completed job's text, else null")
    transcription_note: str | None = Field(
        None,
        description="why the call has no transcript when its latest job was skipped or failed "
        "(e.g. 'transcription is off for system 1 talkgroup 52198', 'audio too short: ...')",
    )
    queue_ahead: int | None = Field(
        None,
        description="while the call's job waits (pending or queued): how many waiting jobs run first; "
        "null otherwise, and for a key limited to some systems",
    )
    units: list[UnitRef] = Field(
        default_factory=list,
        description=f"radios heard, in order of first key-up (at most {MAX_UNITS_SHOWN}; the call's "
        "transmissions list them all)",
    )
    units_more: int = Field(0, description="radios heard beyond those listed in `units`")
    tones: Annotated[list[ToneOut] | None, BeforeValidator(_tones)] = Field(
        None, description="dispatch tones found; null = not analysed yet, [] = none"
    )

    @field_validator("audio_url")
    @classmethod
    def _audio_url(cls, _: str, info: ValidationInfo) -> str:
        return f"/api/calls/{info.data['id']}/audio"

    @classmethod
    def of(cls, call: Call, job: TranscriptionJob | None, units: Sequence[Named] | None = None) -> Self:
        """The call with its latest job's status and, once completed, its transcript; with its
        transmissions (rdio_core.units.call_transmissions), the radios heard."""
        out = cls.model_validate(call)
        if job is not None:
            out.transcription_status = JobStatus(job.status)
            out.transcript = job.text if job.status == JobStatus.COMPLETED else None
            if job.status in (JobStatus.SKIPPED, JobStatus.FAILED):
                out.transcription_note = job.error
        if units:
            heard = summarize(units)
            out.units = [
                UnitRef(unit=u.unit, alias=u.alias, emergency=u.emergency) for u in heard[:MAX_UNITS_SHOWN]
            ]
            out.units_more = max(0, len(heard) - MAX_UNITS_SHOWN)
        return out


class TransmissionOut(BaseModel):
    """One key-up of a call: which radio, from when (seconds into the audio), under which alias."""

    offset_seconds: float
    duration_seconds: float | None = Field(description="until the next key-up or the end of the audio")
    unit: int | None = Field(description="the radio id; null when the recorder did not know it")
    alias: str | None
    alias_source: Literal["config", "learned"] | None = Field(
        description="config: from units: in the config; learned: sent by a recorder"
    )
    tag: str | None = Field(description="the alias this call carried for the radio, as sent")
    emergency: bool
    origin: str = Field(description="the upload field it came from: srcList, sources or source")


class WordOut(BaseModel):
    word: str
    start: float | None
    end: float | None
    unit: int | None
    alias: str | None


class SegmentOut(BaseModel):
    """A transcript segment with the radio on air at its midpoint (see rdio_core.units)."""

    start: float | None
    end: float | None
    text: str
    unit: int | None
    alias: str | None
    words: list[WordOut] | None = Field(description="aligned words, each attributed the same way")


class CallDetail(CallOut):
    """One call (``GET /api/calls/{id}``): the list fields plus the ones that grow with its length."""

    frequencies: list[Any] | None
    sources: list[Any] | None
    meta: dict[str, Any] | None = Field(description="the uploader's own metadata (trunk-recorder's JSON)")
    transmissions: list[TransmissionOut] = Field(default_factory=list)
    segments: list[SegmentOut] = Field(
        default_factory=list, description="the completed transcript's segments, each with its radio"
    )

    def attribute(self, transmissions: Sequence[Named], segments: list[Any] | None) -> Self:
        """Fill transmissions and per-segment radios (attribution is computed when read)."""
        self.transmissions = [
            TransmissionOut(
                offset_seconds=t.offset,
                duration_seconds=t.duration,
                unit=t.unit,
                alias=t.alias,
                alias_source=t.alias_source,
                tag=t.tag,
                emergency=t.emergency,
                origin=t.origin,
            )
            for t in transmissions
        ]
        self.segments = [SegmentOut.model_validate(s) for s in attribute(segments, transmissions)]
        return self


LARGE_FIELDS = tuple(
    name for name in CallDetail.model_fields if name not in CallOut.model_fields and name in Call.__table__.c
)
"""Unbounded JSON columns: only on the single-call route, and never loaded for a list."""


# -- units ----------------------------------------------------------------------------------------


class UnitOut(BaseModel):
    system: int
    unit: int
    alias: str | None = Field(description="the configured alias if any, else the learned one")
    alias_source: Literal["config", "learned"] | None
    learned_alias: str | None = Field(description="the last alias a recorder sent for it")
    first_seen_at: UtcTime | None = Field(
        description="its first call; null for a configured radio not yet heard"
    )
    last_seen_at: UtcTime | None


class UnitList(BaseModel):
    units: list[UnitOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class CallPage(BaseModel):
    calls: list[CallOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class _Activity(BaseModel):
    """Calls the asking key may see, and when the newest of them began (for the talkgroups view)."""

    call_count: int = 0
    last_call_at: UtcTime | None = None


class SystemOut(_Rows, _Activity):
    id: int
    label: str | None


class SystemList(BaseModel):
    systems: list[SystemOut]


class TalkgroupOut(_Rows, _Activity):
    system: int = Field(validation_alias="system_id")
    talkgroup: int
    label: str | None
    name: str | None
    tag: str | None
    group: str | None
    transcribed: bool = Field(
        True, description="false: transcription is off for this talkgroup (config), its calls are stored only"
    )


class TalkgroupList(BaseModel):
    talkgroups: list[TalkgroupOut]


# -- search ---------------------------------------------------------------------------------------


class SearchResult(BaseModel):
    call: CallOut
    snippet: str = Field(description="the matching words in context, from the transcript or the labels")


class SearchPage(BaseModel):
    results: list[SearchResult]
    next_cursor: str | None


# -- transcription --------------------------------------------------------------------------------

# Printable text only: PostgreSQL refuses NUL in a string (a 500), and a model or language name never
# holds control characters.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class JobRequest(BaseModel):
    """The body of ``POST /api/transcription/jobs``."""

    call_id: Id
    priority: int = Field(3, ge=1, le=5, description="1 = most urgent, 5 = least")
    model: str | None = Field(None, max_length=200, pattern=_PRINTABLE)
    language: str | None = Field(None, max_length=16, pattern=_PRINTABLE)


class JobOut(_Rows):
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


class JobSummary(_Rows):
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
    deferred: int = Field(description="held back while the backlog was deep; run when the queue drains")
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


# -- alerts ---------------------------------------------------------------------------------------


class AlertActionOut(BaseModel):
    """An action as the API shows it: never a secret, a credential or a header's value."""

    kind: Literal["webhook", "apprise"]
    target: str = Field(description="the URL, redacted (credentials and tokens replaced by ***)")
    headers: list[str] = Field(default_factory=list, description="names of extra webhook headers")
    signed: bool = Field(description="POSTs carry X-Rdio-Signature (every webhook)")


class AlertRuleOut(BaseModel):
    """A rule of ``alerts.rules`` and the stage it fires at."""

    name: str
    enabled: bool
    stage: Literal["upload", "tones", "transcript"] = Field(
        description="what the rule waits for: the transcript (text rules), tones, or nothing (upload)"
    )
    words: list[str]
    phrases: list[str]
    patterns: list[str]
    systems: list[int]
    talkgroups: list[int]
    units: list[int]
    tones: list[str | float]
    cooldown_seconds: float
    actions: list[AlertActionOut]


class AlertRuleList(BaseModel):
    rules: list[AlertRuleOut]


class AlertAttemptOut(_Rows):
    """One try at sending a delivery."""

    at: UtcTime
    ok: bool
    status_code: int | None = Field(description="the receiver's HTTP status (webhooks), else null")
    error: str | None
    duration_ms: float


class AlertDeliveryOut(_Rows):
    """One rule's action for one call, with every attempt (oldest first)."""

    id: int
    call_id: int
    system: int
    talkgroup: int
    talkgroup_label: str | None
    call_time: UtcTime
    rule: str
    action_index: int
    action_kind: Literal["webhook", "apprise"]
    target: str = Field(description="redacted, as in /api/alerts/rules")
    stage: Literal["upload", "tones", "transcript"]
    matched_text: str | None
    status: Literal["pending", "sent", "failed"]
    attempts: int
    error: str | None = Field(description="the last failure, if any")
    created_at: UtcTime
    updated_at: UtcTime
    sent_at: UtcTime | None
    next_attempt_at: UtcTime | None = Field(description="when a retry is due, while one is")
    attempt_log: list[AlertAttemptOut]


class AlertDeliveryPage(BaseModel):
    deliveries: list[AlertDeliveryOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


# -- health ---------------------------------------------------------------------------------------


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


class WorkerOut(_Rows):
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


# -- events (the data: of each SSE message) -------------------------------------------------------


class CallCreated(BaseModel):
    """``event: call.created``"""

    call: CallOut


class CallAnalyzed(BaseModel):
    """``event: call.analyzed``: dispatch tones were found on a call after it was stored."""

    call_id: int
    tones: Annotated[list[ToneOut], BeforeValidator(_tones)]


class TranscriptUpdated(_Rows):
    """``event: transcript.updated``: a job ended (completed, skipped or failed)."""

    call_id: int
    job_id: int = Field(validation_alias="id")
    status: JobStatus
    text: str | None
    segments: list[Any] | None
    error: str | None


class BackfillIn(BaseModel):
    """The body of ``POST /api/transcription/backfill``: which historical calls to (re)transcribe."""

    model_config = ConfigDict(extra="forbid")

    since: Time | None = Field(None, description="Calls at or after this time (UTC if no offset)")
    until: Time | None = Field(None, description="Calls before this time")
    system: Id | None = None
    talkgroup: Id | None = None
    model: str | None = Field(None, max_length=200, pattern=_PRINTABLE)
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


EVENT_PAYLOADS: tuple[type[BaseModel], ...] = (CallCreated, TranscriptUpdated, CallAnalyzed)
"""Listed among /openapi.json's components, though the stream is text/event-stream."""
