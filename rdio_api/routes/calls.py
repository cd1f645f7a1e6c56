"""Read API: calls (with cursor pagination), their audio, systems and talkgroups."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy import Select, and_, exists, false, or_, select
from sqlalchemy.orm import Session

from rdio_api.auth import read_access
from rdio_api.state import AppState, get_state
from rdio_core.models import Call, JobStatus, System, Talkgroup, TranscriptionJob
from rdio_core.settings import ALL, ApiKey

router = APIRouter(tags=["calls"])


def iso(value: datetime | None) -> str | None:
    return value.replace(tzinfo=UTC).isoformat() if value is not None else None


def get_session(state: AppState = Depends(get_state)):  # type: ignore[no-untyped-def]
    with state.factory() as session:
        yield session


def naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def restrict_to_key(stmt: Select, key: ApiKey | None) -> Select:
    """Limit a call query to the systems/talkgroups a key is granted."""
    if key is None or key.systems == ALL:
        return stmt
    clauses = []
    for grant in key.systems:
        if grant.talkgroups == ALL:
            clauses.append(Call.system_id == grant.id)
        else:
            clauses.append(and_(Call.system_id == grant.id, Call.talkgroup.in_(grant.talkgroups)))
    return stmt.where(or_(*clauses) if clauses else false())


def latest_jobs(session: Session, call_ids: list[int]) -> dict[int, TranscriptionJob]:
    """The most recent job per call: the completed one if any, else the newest."""
    if not call_ids:
        return {}
    jobs = session.execute(
        select(TranscriptionJob).where(TranscriptionJob.call_id.in_(call_ids)).order_by(TranscriptionJob.id)
    ).scalars()
    best: dict[int, TranscriptionJob] = {}
    for job in jobs:
        current = best.get(job.call_id)
        if current is None or job.status == JobStatus.COMPLETED or current.status != JobStatus.COMPLETED:
            best[job.call_id] = job
    return best


def call_dict(call: Call, job: TranscriptionJob | None) -> dict[str, Any]:
    return {
        "id": call.id,
        "system": call.system_id,
        "talkgroup": call.talkgroup,
        "date_time": iso(call.date_time),
        "source": call.source,
        "frequency": call.frequency,
        "frequencies": call.frequencies,
        "sources": call.sources,
        "patches": call.patches,
        "talkgroup_label": call.talkgroup_label,
        "talkgroup_group": call.talkgroup_group,
        "talkgroup_tag": call.talkgroup_tag,
        "talkgroup_name": call.talkgroup_name,
        "system_label": call.system_label,
        "talker_alias": call.talker_alias,
        "site": call.site,
        "audio_name": call.audio_name,
        "audio_type": call.audio_type,
        "audio_path": call.audio_path,
        "audio_sha256": call.audio_sha256,
        "audio_bytes": call.audio_bytes,
        "audio_mime": call.audio_mime,
        "audio_url": f"/api/calls/{call.id}/audio",
        "duration_seconds": call.duration_seconds,
        "received_at": iso(call.received_at),
        "client_kind": call.client_kind,
        "key_name": call.key_name,
        "meta": call.meta,
        "transcription_status": job.status if job else None,
        "transcript": job.text if job is not None and job.status == JobStatus.COMPLETED else None,
    }


def _encode_cursor(call: Call) -> str:
    raw = f"{call.date_time.isoformat()}|{call.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        return datetime.fromisoformat(stamp), int(ident)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "Invalid cursor") from None


@router.get("/api/calls")
def list_calls(
    system: int | None = None,
    talkgroup: int | None = None,
    since: datetime | None = Query(None, description="calls at or after this time (RFC 3339)"),
    until: datetime | None = Query(None, description="calls before this time (RFC 3339)"),
    has_transcript: bool | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    key: ApiKey | None = Depends(read_access),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    stmt = restrict_to_key(select(Call), key)
    if system is not None:
        stmt = stmt.where(Call.system_id == system)
    if talkgroup is not None:
        stmt = stmt.where(Call.talkgroup == talkgroup)
    if since is not None:
        stmt = stmt.where(Call.date_time >= naive_utc(since))
    if until is not None:
        stmt = stmt.where(Call.date_time < naive_utc(until))
    if has_transcript is not None:
        done = exists().where(
            TranscriptionJob.call_id == Call.id,
            TranscriptionJob.status == JobStatus.COMPLETED,
            TranscriptionJob.text.is_not(None),
            TranscriptionJob.text != "",
        )
        stmt = stmt.where(done if has_transcript else ~done)
    if cursor:
        at, ident = _decode_cursor(cursor)
        stmt = stmt.where(or_(Call.date_time < at, and_(Call.date_time == at, Call.id < ident)))
    rows = list(
        session.execute(stmt.order_by(Call.date_time.desc(), Call.id.desc()).limit(limit + 1)).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    jobs = latest_jobs(session, [c.id for c in rows])
    return {
        "calls": [call_dict(c, jobs.get(c.id)) for c in rows],
        "next_cursor": _encode_cursor(rows[-1]) if more and rows else None,
    }


def load_call(session: Session, call_id: int, key: ApiKey | None) -> Call:
    call = session.execute(restrict_to_key(select(Call).where(Call.id == call_id), key)).scalar_one_or_none()
    if call is None:
        raise HTTPException(404, f"Call {call_id} not found")
    return call


@router.get("/api/calls/{call_id}")
def get_call(
    call_id: int, key: ApiKey | None = Depends(read_access), session: Session = Depends(get_session)
) -> dict[str, Any]:
    call = load_call(session, call_id, key)
    return call_dict(call, latest_jobs(session, [call.id]).get(call.id))


@router.get("/api/calls/{call_id}/audio", response_class=FileResponse)
def get_call_audio(
    call_id: int,
    key: ApiKey | None = Depends(read_access),
    session: Session = Depends(get_session),
    state: AppState = Depends(get_state),
) -> FileResponse:
    call = load_call(session, call_id, key)
    path = state.store.absolute(call.audio_path)
    if not path.is_file():
        raise HTTPException(410, f"Audio for call {call_id} is missing from storage")
    return FileResponse(
        path, media_type=call.audio_mime, filename=path.name, content_disposition_type="inline"
    )


@router.get("/api/systems")
def list_systems(
    key: ApiKey | None = Depends(read_access), session: Session = Depends(get_session)
) -> dict[str, Any]:
    stmt = select(System).order_by(System.id)
    if key is not None and key.systems != ALL:
        stmt = stmt.where(System.id.in_([g.id for g in key.systems]))
    return {"systems": [{"id": s.id, "label": s.label} for s in session.execute(stmt).scalars()]}


@router.get("/api/talkgroups")
def list_talkgroups(
    system: int | None = None,
    key: ApiKey | None = Depends(read_access),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    stmt = select(Talkgroup).order_by(Talkgroup.system_id, Talkgroup.talkgroup)
    if system is not None:
        stmt = stmt.where(Talkgroup.system_id == system)
    items = [
        t for t in session.execute(stmt).scalars() if key is None or key.allows(t.system_id, t.talkgroup)
    ]
    return {
        "talkgroups": [
            {
                "system": t.system_id,
                "talkgroup": t.talkgroup,
                "label": t.label,
                "name": t.name,
                "tag": t.tag,
                "group": t.group,
            }
            for t in items
        ]
    }
