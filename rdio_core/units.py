"""Units (radio ids): who transmitted on a call, when, and under which alias.

Recorders report a call's talkers three ways, all turned into ``call_transmissions`` rows here:

- trunk-recorder: ``srcList`` in its meta, ``[{"pos": 0.0, "src": 1234, "tag": "E7", "emergency": 0,
  ...}]``, one entry per key-up, ``pos`` in seconds into the recording (origin ``srcList``);
- Rdio Scanner's form field ``sources`` (``[{"pos": .., "src": ..}]``; origin ``sources``);
- SDRTrunk: one ``source`` radio id and maybe a ``talkerAlias`` for it (origin ``source``, offset 0).

**Attribution rule.** A transcript segment (or aligned word) belongs to the transmission whose
``[pos, next pos)`` contains the segment's midpoint; a midpoint before the first ``pos`` goes to the
first transmission, one after the last ``pos`` to the last. The midpoint rather than the start
because Whisper's segment starts run early into the previous key-up's tail (VAD padding); a
segment that straddles a hand-over goes to whoever spoke most of it when the two halves are equal.

It is computed when a call is read, not stored with the transcript: the transmissions are in their
own table and the segments in the job row, so attributing costs one bisect per segment (about 1 µs:
a 40-segment call with 30 transmissions took 0.04 ms, 0.24 ms with 5 aligned words per segment),
needs no backfill for calls transcribed before units existed, and stays right after a
re-transcription or a change of this rule. The radio pipeline decodes speech in windows of up to
~29 s, one segment each, so a short call's single segment goes to one radio; aligned words are
what tell its key-ups apart.

**Aliases.** The units table keeps the last alias an upload carried for a radio (learned); an alias
in ``units:`` of the config wins over it, applied at read time (reloads take effect at once).
Shown, strongest first: configured alias, the alias this call carried, the learned one.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Connection, Select, Table, and_, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from rdio_core.bounds import MAX_ID
from rdio_core.models import Call, CallTransmission, Unit
from rdio_core.unit_settings import UnitSettings

log = logging.getLogger(__name__)

Origin = Literal["srcList", "sources", "source"]
AliasSource = Literal["config", "learned"]

MAX_TRANSMISSIONS = 1000
"""Transmissions kept per call. A busy 15-minute fireground call holds ~300 key-ups; past this the
list is noise (a recorder looping) and the rest stays in the call's stored ``sources``."""
MAX_OFFSET = 86_400.0
"""A ``pos`` past a day into a recording is garbage (recordings are capped far below that)."""
TAG_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Transmission:
    offset: float
    unit: int | None
    tag: str | None = None
    emergency: bool = False
    duration: float | None = None
    origin: Origin = "source"


@dataclass
class Parsed:
    transmissions: list[Transmission] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # entries skipped, for the log line


def radio_id(value: Any) -> int | None:
    """A radio id: a positive whole number that fits BIGINT (trunk-recorder sends -1 for unknown)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            return None
        value = int(text)
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and 0 <= number <= MAX_OFFSET else None


def clean_tag(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:TAG_LIMIT] or None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return value is True or (isinstance(value, int | float) and not isinstance(value, bool) and value == 1)


def parse_transmissions(
    source: int | None,
    talker_alias: str | None,
    sources: Any,
    duration: float | None,
    origin: Origin = "sources",
) -> Parsed:
    """A call's transmissions, sorted by offset, from what the recorder sent.

    Entries that cannot be read (a ``pos`` that is not a number of seconds, a string where an object
    belongs) are skipped and named in ``problems``: a call is never refused for them (SDRTrunk does
    not retry). ``talkerAlias`` belongs to ``source``: it fills the tag of that radio's entries."""
    out = Parsed()
    if isinstance(sources, list):
        previous = 0.0
        for index, entry in enumerate(sources):
            if len(out.transmissions) >= MAX_TRANSMISSIONS:
                out.problems.append(f"{len(sources) - index} entries past the first {MAX_TRANSMISSIONS}")
                break
            if isinstance(entry, dict):
                raw_pos = entry.get("pos")
                pos = previous if raw_pos is None else _seconds(raw_pos)
                if pos is None:
                    out.problems.append(f"entry {index}: pos {str(raw_pos)[:40]!r} is not a time in seconds")
                    continue
                unit, tag, emergency = (
                    radio_id(entry.get("src")),
                    clean_tag(entry.get("tag")),
                    _flag(entry.get("emergency")),
                )
            elif isinstance(entry, int | float | str) and radio_id(entry) is not None:
                pos, unit, tag, emergency = previous, radio_id(entry), None, False
            else:
                out.problems.append(f"entry {index}: {str(entry)[:40]!r} is not a transmission")
                continue
            if tag is None and unit is not None and unit == source:
                tag = talker_alias
            out.transmissions.append(Transmission(pos, unit, tag, emergency, None, origin))
            previous = pos
    elif sources is not None:
        out.problems.append("sources is not a list")
    if not out.transmissions and source is not None:
        out.transmissions.append(Transmission(0.0, source, talker_alias, False, None, "source"))
    out.transmissions.sort(key=lambda t: t.offset)  # stable: equal offsets keep the sender's order
    ends: list[float | None] = [t.offset for t in out.transmissions[1:]]
    ends.append(duration)
    out.transmissions = [
        Transmission(
            t.offset,
            t.unit,
            t.tag,
            t.emergency,
            round(end - t.offset, 3) if end is not None and end >= t.offset else None,
            t.origin,
        )
        for t, end in zip(out.transmissions, ends, strict=False)  # no transmissions: ends is [duration]
    ]
    return out


def transmission_rows(call_id: int, transmissions: Sequence[Transmission]) -> list[dict[str, Any]]:
    """``call_transmissions`` rows for one call, for a multi-row INSERT."""
    return [
        {
            "call_id": call_id,
            "seq": seq,
            "offset_seconds": t.offset,
            "duration_seconds": t.duration,
            "unit": t.unit,
            "tag": t.tag,
            "emergency": t.emergency,
            "origin": t.origin,
        }
        for seq, t in enumerate(transmissions)
    ]


# -- the units table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sighting:
    system: int
    unit: int
    alias: str | None
    seen: datetime


def sightings(system: int, seen: datetime, transmissions: Iterable[Transmission]) -> list[Sighting]:
    return [Sighting(system, t.unit, t.tag, seen) for t in transmissions if t.unit is not None]


def learn_units(
    session: Session | Connection, seen: Iterable[Sighting], *, learn_aliases: bool = True
) -> int:
    """Upsert the radios heard into ``units`` in the caller's transaction: one executemany (the
    statement compiled once; SQLite loops in C, psycopg pipelines).

    Rows are merged per radio first (PostgreSQL refuses one statement touching a row twice) and
    sorted, so two API processes upserting overlapping radios take their row locks in the same
    order and cannot deadlock. A late upload (older call) moves ``first_seen_at`` back but does not
    replace the alias learned from a newer one. Returns the number of radios written."""
    merged: dict[tuple[int, int], tuple[datetime, datetime, str | None, datetime | None]] = {}
    for s in seen:
        alias = s.alias if learn_aliases else None
        first, last, known, known_at = merged.get((s.system, s.unit), (s.seen, s.seen, None, None))
        if alias is not None and (known_at is None or s.seen >= known_at):
            known, known_at = alias, s.seen
        merged[(s.system, s.unit)] = (min(first, s.seen), max(last, s.seen), known, known_at)
    if not merged:
        return 0
    rows = [
        {"system_id": system, "unit": unit, "alias": alias, "first_seen_at": first, "last_seen_at": last}
        for (system, unit), (first, last, alias, _) in sorted(merged.items())
    ]
    bind = session.get_bind() if isinstance(session, Session) else session
    session.execute(_upsert(bind.dialect.name), rows)
    return len(rows)


@functools.cache
def _upsert(dialect: str) -> Any:
    """Built once per dialect, on the table (Core): building it per batch and running it through
    the ORM's bulk path was ~20% of the call writer's CPU (bench/ingest.py, profiled)."""
    table = cast(Table, Unit.__table__)
    u = table.c
    stmt = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[u.system_id, u.unit],
        set_={
            "alias": case(
                (and_(new.alias.is_not(None), new.last_seen_at >= u.last_seen_at), new.alias),
                else_=func.coalesce(u.alias, new.alias),
            ),
            "first_seen_at": case(
                (new.first_seen_at < u.first_seen_at, new.first_seen_at), else_=u.first_seen_at
            ),
            "last_seen_at": case((new.last_seen_at > u.last_seen_at, new.last_seen_at), else_=u.last_seen_at),
        },
    )


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Named:
    """A transmission as shown: the stored row plus the alias that wins and where it came from."""

    offset: float
    duration: float | None
    unit: int | None
    tag: str | None
    emergency: bool
    origin: str
    alias: str | None
    alias_source: AliasSource | None


def pick_alias(
    config: UnitSettings, system: int, unit: int | None, tag: str | None, learned: str | None
) -> tuple[str | None, AliasSource | None]:
    """Configured alias, else the one this call carried, else the one the units table learned."""
    if unit is not None:
        configured = config.alias(system, unit)
        if configured is not None:
            return configured, "config"
    if tag is not None:
        return tag, "learned"
    if learned is not None:
        return learned, "learned"
    return None, None


def call_transmissions(
    session: Session, calls: Sequence[Call], config: UnitSettings
) -> dict[int, list[Named]]:
    """Each call's transmissions in order, with aliases: one query for a page of calls."""
    if not calls:
        return {}
    systems = {c.id: c.system_id for c in calls}
    t = CallTransmission
    stmt = (
        select(
            t.call_id, t.offset_seconds, t.duration_seconds, t.unit, t.tag, t.emergency, t.origin, Unit.alias
        )
        .join(Call, Call.id == t.call_id)
        .outerjoin(Unit, and_(Unit.system_id == Call.system_id, Unit.unit == t.unit))
        .where(t.call_id.in_(list(systems)))
        .order_by(t.call_id, t.seq)
    )
    out: dict[int, list[Named]] = {c.id: [] for c in calls}
    for call_id, offset, duration, unit, tag, emergency, origin, learned in session.execute(stmt):
        alias, source = pick_alias(config, systems[call_id], unit, tag, learned)
        out[call_id].append(Named(offset, duration, unit, tag, bool(emergency), origin, alias, source))
    return out


@dataclass(frozen=True, slots=True)
class UnitSummary:
    """A radio in a call list: once per call, emergency if any of its transmissions said so."""

    unit: int
    alias: str | None
    emergency: bool


def summarize(transmissions: Sequence[Named]) -> list[UnitSummary]:
    """Distinct radios in order of first key-up."""
    order: dict[int, UnitSummary] = {}
    for t in transmissions:
        if t.unit is None:
            continue
        prior = order.get(t.unit)
        if prior is None:
            order[t.unit] = UnitSummary(t.unit, t.alias, t.emergency)
        else:
            order[t.unit] = UnitSummary(t.unit, prior.alias or t.alias, prior.emergency or t.emergency)
    return list(order.values())


def unit_at(transmissions: Sequence[Named], offsets: Sequence[float], moment: float) -> Named | None:
    """The transmission on air at ``moment`` seconds (module docstring: the attribution rule)."""
    if not transmissions:
        return None
    return transmissions[max(bisect.bisect_right(offsets, moment) - 1, 0)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def attribute(segments: Sequence[Any] | None, transmissions: Sequence[Named]) -> list[dict[str, Any]]:
    """The transcript's segments (and aligned words) with the unit on air at each one's midpoint.

    A segment without times gets no unit; a word without times (alignment could not place it)
    gets its segment's."""
    offsets = [t.offset for t in transmissions]
    out = []
    for segment in segments or []:
        if not isinstance(segment, dict):
            continue
        start, end = _number(segment.get("start")), _number(segment.get("end"))
        on_air = (
            unit_at(transmissions, offsets, (start + end) / 2)
            if start is not None and end is not None
            else None
        )
        words = None
        if isinstance(segment.get("words"), list):
            words = []
            for word in segment["words"]:
                if not isinstance(word, dict):
                    continue
                ws, we = _number(word.get("start")), _number(word.get("end"))
                speaker = (
                    unit_at(transmissions, offsets, (ws + we) / 2)
                    if ws is not None and we is not None
                    else on_air
                )
                words.append(
                    {
                        "word": str(word.get("word", "")),
                        "start": ws,
                        "end": we,
                        "unit": speaker.unit if speaker else None,
                        "alias": speaker.alias if speaker else None,
                    }
                )
        out.append(
            {
                "start": start,
                "end": end,
                "text": str(segment.get("text", "")),
                "unit": on_air.unit if on_air else None,
                "alias": on_air.alias if on_air else None,
                "words": words,
            }
        )
    return out


def calls_with_unit(unit: int) -> ColumnElement[bool]:
    """A WHERE clause for ``select(Call)``: the call has a transmission by this radio (any system).
    Answered from ix_call_transmissions_unit (unit, call_id) without reading transmission rows."""
    return Call.id.in_(select(CallTransmission.call_id).where(CallTransmission.unit == unit))


def unit_ids(session: Session, call_id: int, source: int | None) -> set[int]:
    """Every radio heard on a call: its ``source`` and its transmissions (what alert rules match)."""
    found = {source} if source is not None else set()
    found.update(
        u
        for u in session.execute(
            select(CallTransmission.unit).where(
                CallTransmission.call_id == call_id, CallTransmission.unit.is_not(None)
            )
        ).scalars()
        if u is not None
    )
    return found


def visible_units(stmt: Select) -> Select:
    """(system, unit, first, last) of radios heard on the calls ``stmt`` (a select of Call) admits,
    for keys limited to some talkgroups of a system."""
    calls = stmt.with_only_columns(Call.id, Call.system_id, Call.date_time).subquery()
    return (
        select(
            calls.c.system_id, CallTransmission.unit, func.min(calls.c.date_time), func.max(calls.c.date_time)
        )
        .join(CallTransmission, CallTransmission.call_id == calls.c.id)
        .where(CallTransmission.unit.is_not(None))
        .group_by(calls.c.system_id, CallTransmission.unit)
    )
