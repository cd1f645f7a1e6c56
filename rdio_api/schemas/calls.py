"""A call as the API answers it, its radios, tones and transcript segments; systems and talkgroups.

A call has two shapes, both built on the field set of ``rdio_core.calls``. :class:`CallOut` is a
list item: the fields bounded in size. :class:`CallDetail` adds ``frequencies``, ``sources`` and
``meta``, which grow with a call's length (20 trunk-recorder calls with 900 KB of meta each made a
31.7 MB list page) and are only on ``GET /api/calls/{id}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator

from rdio_api.schemas.base import Rows, UtcTime
from rdio_core.calls import CallLists, CallSummary
from rdio_core.models import Call, JobStatus, TranscriptionJob
from rdio_core.units import Named, attribute, summarize

MAX_UNITS_SHOWN = 16
"""Radios a list item names: a trunk-recorder srcList of a long call can hold thousands, and list
pages are bounded in bytes (api.max_list_bytes); the call's detail has every transmission."""


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


def read_tones(value: Any) -> Any:
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


class _Id(Rows):
    id: int


# Its id, the summary fields of rdio_core.calls.CallSummary, then what the server knows of it (the
# bases most-derived-last: pydantic orders fields from the most basic class).
class CallOut(CallSummary, _Id):
    """A call in a list (``/api/calls``, search results, ``call.created`` events)."""

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
    tones: Annotated[list[ToneOut] | None, BeforeValidator(read_tones)] = Field(
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


class CallDetail(CallLists, CallOut):
    """One call (``GET /api/calls/{id}``): the list fields plus the ones that grow with its length."""

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


class CallPage(BaseModel):
    calls: list[CallOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class _Activity(BaseModel):
    """Calls the asking key may see, and when the newest of them began (for the talkgroups view)."""

    call_count: int = 0
    last_call_at: UtcTime | None = None


class SystemOut(Rows, _Activity):
    id: int
    label: str | None


class SystemList(BaseModel):
    systems: list[SystemOut]


class TalkgroupOut(Rows, _Activity):
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
