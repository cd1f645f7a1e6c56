"""``GET /api/events``: the live feed as Server-Sent Events, resumable with ``Last-Event-ID``.

Rows come from the ``events`` table (see rdio_core.models.Event for why a table and not pub/sub).
A stream sends everything after the client's last id that its key may see, then waits on the
process's EventHub. On PostgreSQL ids are taken before commit, so a row can appear below an id
already sent; ids skipped in a range are re-checked for ``GAP_SECONDS`` so such a row still goes out.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from rdio_api.deps import ReadKey, StateDep, latest_jobs, restrict_to_key
from rdio_api.live import EventHub
from rdio_api.responses import AUTH, INVALID, Responses
from rdio_api.schemas import EVENT_PAYLOADS, CallAnalyzed, CallCreated, CallOut, TranscriptUpdated
from rdio_api.state import AppState
from rdio_core import units
from rdio_core.bounds import Id
from rdio_core.models import Call, Event, EventKind, TranscriptionJob
from rdio_core.settings import ApiKey

router = APIRouter(tags=["events"])

BATCH = 200
PING_SECONDS = 15.0
GAP_SECONDS = 30.0
_MESSAGE = {
    "type": "object",
    "description": "One message of the stream (the `retry:` line and `: ping` comments aside). Its "
    "`data` is the JSON of a CallCreated (`event: call.created`), a CallAnalyzed "
    "(`event: call.analyzed`, tones found) or a TranscriptUpdated "
    "(`event: transcript.updated`).",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "send back as Last-Event-ID"},
        "event": {"type": "string", "enum": [kind.value for kind in EventKind]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in EVENT_PAYLOADS]
            },
        },
    },
    "required": ["id", "event", "data"],
}
_STREAM: Responses = {
    200: {"content": {"text/event-stream": {"schema": _MESSAGE}}, "description": "An event stream"},
}


class _Cursor:
    """Where a stream stands: the last id scanned and the ids skipped below it (maybe uncommitted)."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.gaps: dict[int, float] = {}


def _scan(state: AppState, key: ApiKey | None, cursor: _Cursor, upto: int) -> list[tuple[int, str, str]]:
    """Events in (cursor.after, upto] plus remembered gaps, as (id, kind, data as JSON) the key may see."""
    now = time.monotonic()
    cursor.gaps = {i: t for i, t in cursor.gaps.items() if now - t < GAP_SECONDS}
    with state.factory() as session:
        in_range = (Event.id > cursor.after) & (Event.id <= upto)
        stmt = select(Event).where(in_range | Event.id.in_(list(cursor.gaps)) if cursor.gaps else in_range)
        events = list(session.execute(stmt.order_by(Event.id).limit(BATCH)).scalars())
        seen = {e.id for e in events}
        top = events[-1].id if len(events) == BATCH else upto
        for missing in range(cursor.after + 1, top + 1):
            if missing not in seen and missing not in cursor.gaps and top - cursor.after < 10 * BATCH:
                cursor.gaps[missing] = now
        for found in seen:
            cursor.gaps.pop(found, None)
        cursor.after = max(cursor.after, top)
        call_ids = {e.call_id for e in events}
        calls = {
            c.id: c
            for c in session.execute(
                restrict_to_key(select(Call).where(Call.id.in_(call_ids)), key)
            ).scalars()
        }
        jobs = latest_jobs(session, list(calls))
        heard = units.call_transmissions(session, list(calls.values()), state.settings.units)
        job_ids = [e.job_id for e in events if e.job_id is not None]
        by_job = {
            j.id: j
            for j in session.execute(
                select(TranscriptionJob).where(TranscriptionJob.id.in_(job_ids))
            ).scalars()
        }
        out = []
        for event in events:
            call = calls.get(event.call_id)
            if call is None:
                continue
            payload: CallCreated | CallAnalyzed | TranscriptUpdated
            if event.kind == EventKind.CALL_CREATED:
                payload = CallCreated(call=CallOut.of(call, jobs.get(call.id), heard.get(call.id)))
            elif event.kind == EventKind.CALL_ANALYZED:
                payload = CallAnalyzed(call_id=call.id, tones=call.tones or [])
            else:
                job = by_job.get(event.job_id) if event.job_id is not None else None
                if job is None:
                    continue
                payload = TranscriptUpdated.model_validate(job)
            out.append((event.id, event.kind, payload.model_dump_json()))
        return out


def _hub(state: AppState) -> EventHub:
    if state.events is None:
        state.events = EventHub(state.factory)
    return state.events


@router.get("/api/events", response_class=StreamingResponse, responses={**_STREAM, **AUTH, **INVALID})
async def events(
    key: ReadKey,
    state: StateDep,
    last_event_id: str = Header(
        "", pattern=r"^[0-9]{0,18}$", description="resume after this event id (empty: from now)"
    ),
    after: Id | None = Query(None, description="resume after this event id (when no header can be sent)"),
) -> StreamingResponse:
    resume = after
    if last_event_id:  # digits only (its pattern); empty means "from now"
        resume = int(last_event_id)
    hub = _hub(state)
    upto = await run_in_threadpool(hub.latest_id)
    cursor = _Cursor(upto if resume is None else min(resume, upto))

    async def stream() -> AsyncIterator[str]:
        nonlocal upto
        yield "retry: 2000\n\n"
        while not hub.closing.is_set():
            batch = await run_in_threadpool(_scan, state, key, cursor, upto)
            for event_id, kind, data in batch:
                yield f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"
            if cursor.after < upto:
                continue  # a full batch: more to read before waiting
            if await hub.wait_past(upto, 1.0 if cursor.gaps else PING_SECONDS):
                upto = hub.latest
            elif not cursor.gaps and not hub.closing.is_set():
                yield ": ping\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
