"""Read API: calls (with cursor pagination), their audio, systems and talkgroups.

A list page carries each call's summary: the fields that are bounded in size. ``meta`` (trunk-recorder's
whole JSON), ``sources`` and ``frequencies`` grow with the length of a call and are only on
``GET /api/calls/{id}``: 20 trunk-recorder calls with 900 KB of meta each made a 31.7 MB list page.
A page also stops at ``api.max_list_bytes`` of JSON, whatever ``limit`` asked for.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import FileResponse
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import defer

from rdio_api.deps import (
    ReadKey,
    SessionDep,
    StateDep,
    latest_jobs,
    load_call,
    queue_ahead,
    require,
    restrict_to_key,
)
from rdio_api.responses import AUTH, BAD_REQUEST, GONE, INVALID, NOT_FOUND, Responses
from rdio_api.schemas import (
    LARGE_FIELDS,
    CallDetail,
    CallOut,
    CallPage,
    SystemList,
    SystemOut,
    TalkgroupList,
    TalkgroupOut,
)
from rdio_core import units
from rdio_core.bounds import Id, OutOfRange, Time, check_id, naive_utc
from rdio_core.calls import CallFilter
from rdio_core.models import Call, JobStatus, System, Talkgroup, TranscriptionJob
from rdio_core.settings import ApiKey

router = APIRouter(tags=["calls"])

# The audio route also takes a worker key: a GPU box without the audio directory fetches with one.
AudioKey = Annotated[ApiKey | None, Depends(require("read", "worker", public=lambda auth: auth.public_read))]


def _encode_cursor(call: Call) -> str:
    raw = f"{call.date_time.isoformat()}|{call.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (time, id) a cursor carries, checked like any other input: a hand-made cursor with an id
    of 2^63 or a time at the year limits used to reach the database and come back as a 500."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        return naive_utc(datetime.fromisoformat(stamp)), check_id(int(ident))
    except OutOfRange as exc:
        raise HTTPException(400, f"Invalid cursor: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "Invalid cursor: not one this server issued") from None


@router.get("/api/calls", response_model=CallPage, responses={**BAD_REQUEST, **AUTH, **INVALID})
def list_calls(
    key: ReadKey,
    session: SessionDep,
    state: StateDep,
    system: Id | None = None,
    talkgroup: Id | None = None,
    since: Time | None = Query(
        None, description="calls at or after this time (RFC 3339; 1970-01-02 to 2100-01-01 UTC, else 422)"
    ),
    until: Time | None = Query(
        None, description="calls before this time (RFC 3339; 1970-01-02 to 2100-01-01 UTC, else 422)"
    ),
    has_transcript: bool | None = None,
    unit: Id | None = Query(None, description="calls this radio id transmitted on (any system)"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(
        None, max_length=200, pattern=r"^[A-Za-z0-9_-]+$", description="next_cursor of the previous page"
    ),
) -> Response:
    """Newest first, call summaries (no meta, sources, frequencies: see /api/calls/{id}). A page
    ends at ``limit`` calls or at ``api.max_list_bytes`` of JSON, whichever comes first (always at
    least one call); ``next_cursor`` then fetches the next one."""
    lean = select(Call).options(*(defer(getattr(Call, f), raiseload=True) for f in LARGE_FIELDS))
    which = CallFilter(
        system=system, talkgroup=talkgroup, since=since, until=until, has_transcript=has_transcript, unit=unit
    )
    stmt = which.apply(restrict_to_key(lean, key))
    if cursor:
        at, ident = _decode_cursor(cursor)
        stmt = stmt.where(or_(Call.date_time < at, and_(Call.date_time == at, Call.id < ident)))
    rows = list(
        session.execute(stmt.order_by(Call.date_time.desc(), Call.id.desc()).limit(limit + 1)).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    jobs = latest_jobs(session, [c.id for c in rows])
    heard = units.call_transmissions(session, rows, state.settings.units)
    # The page is written here, item by item, so that it stops at the budget measured in the bytes
    # it is sent as (the JSON of a CallPage). 500 items take 9.3 ms to serialise, as the hand-built
    # dicts did (9.1 ms), and come out byte for byte the same.
    budget = state.settings.api.max_list_bytes
    items: list[bytes] = []
    used = 0
    ahead = queue_ahead(session, jobs, key)
    for call in rows:
        out = CallOut.of(call, jobs.get(call.id), heard.get(call.id))
        out.queue_ahead = ahead.get(call.id)
        item = out.model_dump_json().encode()
        if items and used + len(item) + 1 > budget:
            more = True
            break
        items.append(item)
        used += len(item) + 1
    last = rows[len(items) - 1] if items else None
    cursor_out = _encode_cursor(last) if more and last is not None else None
    tail = b"null" if cursor_out is None else f'"{cursor_out}"'.encode()  # base64url: nothing to escape
    body = b'{"calls":[' + b",".join(items) + b'],"next_cursor":' + tail + b"}"
    return Response(body, media_type="application/json")


@router.get("/api/calls/{call_id}", response_model=CallDetail, responses={**AUTH, **NOT_FOUND, **INVALID})
def get_call(call_id: Id, key: ReadKey, session: SessionDep, state: StateDep) -> CallDetail:
    """The call with its transmissions and, once transcribed, its segments each attributed to the
    radio on air at the segment's midpoint (rdio_core.units: computed here, so calls transcribed
    before units existed are attributed too)."""
    call = load_call(session, call_id, key)
    job = latest_jobs(session, [call.id]).get(call.id)
    heard = units.call_transmissions(session, [call], state.settings.units)[call.id]
    segments = None
    if job is not None and job.status == JobStatus.COMPLETED:
        segments = session.execute(
            select(TranscriptionJob.segments).where(TranscriptionJob.id == job.id)
        ).scalar_one_or_none()
    detail = CallDetail.of(call, job, heard).attribute(heard, segments)
    if job is not None:
        detail.queue_ahead = queue_ahead(session, {call.id: job}, key).get(call.id)
    return detail


_AUDIO = {"audio/*": {"schema": {"type": "string", "format": "binary"}}}
_AUDIO_RESPONSES: Responses = {
    200: {"content": _AUDIO, "description": "The call's audio, as uploaded (audio/mpeg, audio/mp4, ...)"},
    206: {
        "content": {**_AUDIO, "multipart/byteranges": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The byte range(s) asked for with Range",
    },
    400: {"content": {"text/plain": {}}, "description": "A malformed Range header"},
    416: {"content": {"text/plain": {}}, "description": "A Range outside the file"},
}


@router.get(
    "/api/calls/{call_id}/audio",
    response_class=FileResponse,
    responses={**_AUDIO_RESPONSES, **AUTH, **NOT_FOUND, **GONE, **INVALID},
)
def get_call_audio(call_id: Id, key: AudioKey, session: SessionDep, state: StateDep) -> FileResponse:
    call = load_call(session, call_id, key)
    if call.audio_removed_at is not None:
        raise HTTPException(
            410,
            f"Audio for call {call_id} was deleted by retention (retention.audio_days) on "
            f"{call.audio_removed_at:%Y-%m-%d}; the call and its transcript are kept",
        )
    path = state.store.absolute(call.audio_path)
    if not path.is_file():
        raise HTTPException(410, f"Audio for call {call_id} is missing from storage")
    return FileResponse(
        path, media_type=call.audio_mime, filename=path.name, content_disposition_type="inline"
    )


@router.get("/api/systems", response_model=SystemList, responses=AUTH)
def list_systems(key: ReadKey, session: SessionDep) -> SystemList:
    stmt = select(System).order_by(System.id)
    if key is not None and not isinstance(key.systems, str):  # a list of grants, not ALL
        stmt = stmt.where(System.id.in_([g.id for g in key.systems]))
    per_system: dict[int, tuple[int, datetime | None]] = {}
    for (system, _), (count, last) in _activity(session, key).items():
        total, newest = per_system.get(system, (0, None))
        per_system[system] = (total + count, max(filter(None, (newest, last)), default=None))
    systems = [
        SystemOut.model_validate(s).model_copy(
            update=dict(zip(("call_count", "last_call_at"), per_system.get(s.id, (0, None)), strict=True))
        )
        for s in session.execute(stmt).scalars()
    ]
    return SystemList(systems=systems)


def _activity(
    session: SessionDep, key: ReadKey, system: int | None = None
) -> dict[tuple[int, int], tuple[int, datetime | None]]:
    """(system, talkgroup) -> (calls, newest start) over the calls the key may see: one grouped
    query that the (system_id, talkgroup, date_time) index answers without reading call rows."""
    stmt = select(Call.system_id, Call.talkgroup, func.count(), func.max(Call.date_time)).group_by(
        Call.system_id, Call.talkgroup
    )
    if system is not None:
        stmt = stmt.where(Call.system_id == system)
    return {(s, t): (n, last) for s, t, n, last in session.execute(restrict_to_key(stmt, key))}


@router.get("/api/talkgroups", response_model=TalkgroupList, responses={**AUTH, **INVALID})
def list_talkgroups(
    key: ReadKey, session: SessionDep, state: StateDep, system: Id | None = None
) -> TalkgroupList:
    stmt = select(Talkgroup).order_by(Talkgroup.system_id, Talkgroup.talkgroup)
    if system is not None:
        stmt = stmt.where(Talkgroup.system_id == system)
    activity = _activity(session, key, system)
    cfg = state.settings.transcription
    items = [
        TalkgroupOut.model_validate(t).model_copy(
            update={
                **dict(
                    zip(
                        ("call_count", "last_call_at"),
                        activity.get((t.system_id, t.talkgroup), (0, None)),
                        strict=True,
                    )
                ),
                "transcribed": cfg.enabled and cfg.resolve(t.system_id, t.talkgroup).enabled,
            }
        )
        for t in session.execute(stmt).scalars()
        if key is None or key.allows(t.system_id, t.talkgroup)
    ]
    return TalkgroupList(talkgroups=items)
