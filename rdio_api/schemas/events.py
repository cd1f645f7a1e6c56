"""The ``data:`` of each message of ``GET /api/events`` (a text/event-stream)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from rdio_api.schemas.base import Rows
from rdio_api.schemas.calls import CallOut, ToneOut, read_tones
from rdio_core.models import JobStatus


class CallCreated(BaseModel):
    """``event: call.created``"""

    call: CallOut


class CallAnalyzed(BaseModel):
    """``event: call.analyzed``: dispatch tones were found on a call after it was stored."""

    call_id: int
    tones: Annotated[list[ToneOut], BeforeValidator(read_tones)]


class TranscriptUpdated(Rows):
    """``event: transcript.updated``: a job ended (completed, skipped or failed)."""

    call_id: int
    job_id: int = Field(validation_alias="id")
    status: JobStatus
    text: str | None
    segments: list[Any] | None
    error: str | None


EVENT_PAYLOADS: tuple[type[BaseModel], ...] = (CallCreated, TranscriptUpdated, CallAnalyzed)
"""Listed among /openapi.json's components, though the stream is text/event-stream."""
