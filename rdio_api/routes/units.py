"""``GET /api/units``: the radios heard per system, with their aliases and when they were last heard.

What a key sees follows its grants like calls do: a key granted whole systems sees those systems'
units (and the configured aliases of radios not heard yet); a key granted some talkgroups of a
system sees only the radios heard on calls of those talkgroups, with first/last seen taken from
those calls, so it learns nothing about traffic it may not read.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import and_, false, or_, select

from rdio_api.deps import ReadKey, SessionDep, StateDep
from rdio_api.responses import AUTH, BAD_REQUEST, INVALID
from rdio_api.schemas import UnitList, UnitOut
from rdio_core import units
from rdio_core.bounds import Id, OutOfRange, check_id
from rdio_core.models import Call, Unit
from rdio_core.unit_settings import UnitSettings

router = APIRouter(tags=["units"])

Key = tuple[int, int]  # (system, unit): the list's order and its cursor


@dataclass
class _Seen:
    learned: str | None
    first: datetime | None
    last: datetime | None


def _encode(at: Key) -> str:
    return base64.urlsafe_b64encode(f"{at[0]}:{at[1]}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        system, _, unit = raw.partition(":")
        return check_id(int(system)), check_id(int(unit))
    except (ValueError, UnicodeDecodeError, OutOfRange):
        raise HTTPException(400, "Invalid cursor: not one this server issued") from None


def _after(at: Key | None) -> list:
    if at is None:
        return []
    return [or_(Unit.system_id > at[0], and_(Unit.system_id == at[0], Unit.unit > at[1]))]


@router.get("/api/units", response_model=UnitList, responses={**BAD_REQUEST, **AUTH, **INVALID})
def list_units(
    key: ReadKey,
    session: SessionDep,
    state: StateDep,
    system: Id | None = None,
    limit: int = Query(500, ge=1, le=2000),
    cursor: str | None = Query(
        None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$", description="next_cursor of the previous page"
    ),
) -> UnitList:
    """Units by system then radio id: heard ones from the units table, configured ones too."""
    at = _decode(cursor) if cursor else None
    config = state.settings.units
    whole: set[int] | None = None  # systems seen whole; None = every system
    partial: dict[int, list[int]] = {}
    if key is not None and not isinstance(key.systems, str):
        whole = set()
        for grant in key.systems:
            if isinstance(grant.talkgroups, str):
                whole.add(grant.id)
            else:
                partial.setdefault(grant.id, []).extend(grant.talkgroups)
        partial = {s: tgs for s, tgs in partial.items() if s not in whole}
    if system is not None:
        whole = {system} & whole if whole is not None else {system}
        partial = {s: tgs for s, tgs in partial.items() if s == system}

    found: dict[Key, _Seen] = {}
    stmt = select(Unit).where(*_after(at)).order_by(Unit.system_id, Unit.unit).limit(limit + 1)
    if whole is not None:
        stmt = stmt.where(Unit.system_id.in_(whole) if whole else false())
    rows = list(session.execute(stmt).scalars())
    for u in rows:
        found[(u.system_id, u.unit)] = _Seen(u.alias, u.first_seen_at, u.last_seen_at)
    if len(rows) > limit:  # keys past the last fetched row cannot make this page
        horizon: Key | None = (rows[-1].system_id, rows[-1].unit)
    else:
        horizon = None
    found.update(_heard_on_talkgroups(session, partial, at, horizon))
    for (sys_id, unit), _alias in config.configured().items():
        visible = whole is None or sys_id in whole
        if visible and (at is None or (sys_id, unit) > at) and (system is None or sys_id == system):
            found.setdefault((sys_id, unit), _Seen(None, None, None))
    ordered = sorted(found)
    page = ordered[:limit]
    more = len(ordered) > limit
    return UnitList(
        units=[_out(config, k, found[k]) for k in page],
        next_cursor=_encode(page[-1]) if more and page else None,
    )


def _heard_on_talkgroups(
    session: SessionDep, partial: dict[int, list[int]], at: Key | None, horizon: Key | None
) -> dict[Key, _Seen]:
    """Radios heard on the talkgroups a key holds, with first/last seen over those calls only."""
    if not partial:
        return {}
    calls = select(Call).where(
        or_(*(and_(Call.system_id == s, Call.talkgroup.in_(tgs)) for s, tgs in partial.items()))
    )
    heard = {
        (s, u): (first, last)
        for s, u, first, last in session.execute(units.visible_units(calls))
        if (at is None or (s, u) > at) and (horizon is None or (s, u) <= horizon)
    }
    learned = {
        (u.system_id, u.unit): u.alias
        for u in session.execute(select(Unit).where(Unit.system_id.in_(list(partial)))).scalars()
        if (u.system_id, u.unit) in heard
    }
    return {k: _Seen(learned.get(k), first, last) for k, (first, last) in heard.items()}


def _out(config: UnitSettings, at: Key, seen: _Seen) -> UnitOut:
    alias, source = units.pick_alias(config, at[0], at[1], None, seen.learned)
    return UnitOut(
        system=at[0],
        unit=at[1],
        alias=alias,
        alias_source=source,
        learned_alias=seen.learned,
        first_seen_at=seen.first,
        last_seen_at=seen.last,
    )
