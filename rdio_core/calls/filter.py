"""Which calls: one filter for every place that selects calls by what they are (the call list, search,
backfill, retention), turned into SQL WHERE clauses in one place.

``has_audio`` reads ``audio_removed_at``: retention deletes a call's file and marks the row, leaving
``audio_bytes`` as uploaded (empty uploads are refused, so every call had audio). ``has_transcript``
is a completed job with text: one that ended empty (silence) is no transcript.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Select, exists

from rdio_core.models import Call, JobStatus, TranscriptionJob
from rdio_core.units import calls_with_unit

_S = TypeVar("_S", bound=Select)  # any select over Call, whatever columns it returns


class CallFilter(BaseModel):
    """Calls matching every condition given; None leaves a condition out. Times are naive UTC,
    ``[since, until)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: int | None = None
    talkgroup: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    unit: int | None = None  # a radio that transmitted on the call (any system)
    has_transcript: bool | None = None
    has_audio: bool | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses over ``Call``, each answered from an index: (system_id, talkgroup,
        date_time), (audio_removed_at, date_time), the transmissions' (unit, call_id), the jobs'
        call_id."""
        where: list[ColumnElement[bool]] = []
        if self.system is not None:
            where.append(Call.system_id == self.system)
        if self.talkgroup is not None:
            where.append(Call.talkgroup == self.talkgroup)
        if self.since is not None:
            where.append(Call.date_time >= self.since)
        if self.until is not None:
            where.append(Call.date_time < self.until)
        if self.unit is not None:
            where.append(calls_with_unit(self.unit))
        if self.has_transcript is not None:
            done = exists().where(
                TranscriptionJob.call_id == Call.id,
                TranscriptionJob.status == JobStatus.COMPLETED,
                TranscriptionJob.text.is_not(None),
                TranscriptionJob.text != "",
            )
            where.append(done if self.has_transcript else ~done)
        if self.has_audio is not None:
            kept = Call.audio_removed_at.is_(None)
            where.append(kept if self.has_audio else ~kept)
        return where

    def apply(self, stmt: _S) -> _S:
        """``stmt`` (a select over ``Call``) narrowed to the matching calls."""
        return stmt.where(*self.clauses())
