"""``GET /api/search``: full-text search over transcripts, labels and unit ids (rdio_core.search)."""

from __future__ import annotations

import base64
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from rdio_api.deps import ReadKey, SessionDep, StateDep, latest_jobs, queue_ahead, restrict_to_key
from rdio_api.responses import AUTH, INVALID, Message, Responses
from rdio_api.schemas import CallOut, SearchPage, SearchResult
from rdio_core import search, units
from rdio_core.bounds import Id, Time
from rdio_core.calls import CallFilter
from rdio_core.models import Call, JobStatus

router = APIRouter(tags=["search"])
_BAD_SEARCH: Responses = {
    400: {"model": Message, "description": "A query with no words (or over 16 terms), or a foreign cursor"}
}


def _cursor(kind: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str, kind: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        got, _, value = raw.partition(":")
        number = int(value)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "Invalid cursor") from None
    if got != kind or not 0 <= number < 2**63:
        raise HTTPException(400, "Invalid cursor (made for another order?)")
    return number


@router.get("/api/search", response_model=SearchPage, responses={**_BAD_SEARCH, **AUTH, **INVALID})
def search_calls(
    key: ReadKey,
    session: SessionDep,
    state: StateDep,
    q: str = Query(..., min_length=1, max_length=500, description='words, "phrases", prefix*'),
    system: Id | None = None,
    talkgroup: Id | None = None,
    since: Time | None = Query(None, description="calls at or after this time (RFC 3339)"),
    until: Time | None = Query(None, description="calls before this time (RFC 3339)"),
    has_audio: bool | None = None,
    order: Literal["newest", "relevance"] = "newest",
    cursor: str | None = None,
    limit: int = Query(20, ge=1, le=100),
) -> SearchPage:
    try:
        parsed = search.as_unit(session, search.parse_query(q), q)
    except search.QueryError as exc:
        raise HTTPException(400, str(exc)) from None
    which = CallFilter(system=system, talkgroup=talkgroup, since=since, until=until, has_audio=has_audio)
    stmt = which.apply(restrict_to_key(select(Call), key))
    offset = 0
    if order == "newest" and cursor:
        stmt = stmt.where(Call.id < _read_cursor(cursor, "id"))
    elif cursor:
        offset = _read_cursor(cursor, "offset")
    stmt = search.apply_match(stmt, session.get_bind().dialect.name, parsed, order)
    if order == "relevance" and parsed.clauses:  # transcript matches first (search.relevance_ids)
        ids = search.relevance_ids(session, stmt, parsed)[offset : offset + limit + 1]
        by_id = {c.id: c for c in session.execute(select(Call).where(Call.id.in_(ids))).scalars()}
        rows = [by_id[i] for i in ids]
    else:
        rows = list(session.execute(stmt.limit(limit + 1).offset(offset)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    jobs = latest_jobs(session, [c.id for c in rows])
    heard = units.call_transmissions(session, rows, state.settings.units)
    ahead = queue_ahead(session, jobs, key)
    results = []
    for call in rows:
        job = jobs.get(call.id)
        found = CallOut.of(call, job, heard.get(call.id))
        done = job is not None and job.status == JobStatus.COMPLETED and job.text
        found.queue_ahead = ahead.get(call.id)
        source = job.text if done and job is not None else _labels(found)
        results.append(SearchResult(call=found, snippet=search.snippet(source or "", parsed)))
    next_cursor = None
    if more and rows:
        next_cursor = _cursor("id", rows[-1].id) if order == "newest" else _cursor("offset", offset + limit)
    return SearchPage(results=results, next_cursor=next_cursor)


def _labels(call: CallOut) -> str:
    return " · ".join(str(v) for v in call.search_labels() if v not in (None, ""))
