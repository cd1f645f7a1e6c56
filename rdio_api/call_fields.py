"""Map Rdio Scanner upload fields (SDRTrunk, trunk-recorder, others) onto one call record.

Required fields that are missing or unreadable produce the exact Rdio Scanner messages clients
know. Optional fields that are unreadable are dropped and noted rather than failing the call:
SDRTrunk never retries, so rejecting a call for a malformed label would lose it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from rdio_core.bounds import MAX_ID, OutOfRange, naive_utc
from rdio_core.calls import SENT_TEXT, CallData

# trunk-recorder's meta is a flat object with lists of flat objects (srcList, freqList): depth 3.
MAX_JSON_DEPTH = 8


class IncompleteCall(Exception):
    """A required field is missing or unreadable; message is Rdio Scanner's wording (clients
    match its start), followed by why when a value was sent but refused."""

    def __init__(self, what: str, why: str | None = None) -> None:
        self.message = f"Incomplete call data: no {what}" + (f" ({why})" if why else "")
        super().__init__(self.message)


_BAD_NUMBER = f"not a whole number from 1 to {MAX_ID}"
_BAD_TIME = (
    "not a time from 1970-01-02 to 2100-01-01 UTC; a number is Unix seconds, "
    "or milliseconds when it has 13 digits or more"
)
#: A number at or above this is milliseconds (13 digits: from 2001-09-09), below it seconds. A
#: 12-digit number is then seconds past the year 5138 and refused: read as milliseconds it used to
#: land in the 1970s-1990s, silently. SDRTrunk and trunk-recorder send 10-digit seconds.
MILLISECONDS_FROM = 10**12
# Stored in their own columns (sources, frequencies): kept out of the stored meta so a long call's
# srcList is not written twice (issue 13: 900 KB meta per call, stored twice).
_META_COPIED = ("srcList", "freqList")


def _required(value: Any, parsed: Any, what: str, why: str) -> Any:
    if parsed is None:
        raise IncompleteCall(what, why if clean_text(value) is not None else None)
    return parsed


def hold_to_clock(call: CallData, received: datetime, max_ahead_seconds: float) -> bool:
    """A call stamped more than ``max_ahead_seconds`` after ``received`` (naive UTC, the server's
    clock) is stored at ``received``, with the time sent noted under ``meta.ignored_fields``.

    A recorder whose clock is years ahead put its calls at the top of ``GET /api/calls`` and the
    live feed for good. Refusing them is no answer: SDRTrunk drops a call on any reply but success.
    Times behind the clock are kept whatever their age (queued and imported calls arrive late).
    True when the time was replaced."""
    ahead = (call.date_time - received).total_seconds()
    if ahead <= max_ahead_seconds:
        return False
    sent = call.date_time_sent or call.date_time.isoformat()
    call.ignored["dateTime"] = (
        f"{sent[:60]} ({call.date_time:%Y-%m-%dT%H:%M:%S}Z) was {ahead / 86400:.1f} days ahead of "
        f"the server clock (upload.max_future_skew_seconds {max_ahead_seconds:g}): stored at the "
        "time received"
    )
    call.date_time = received
    return True


def clean_text(value: Any, limit: int = 200) -> str | None:
    """A label as stored: stripped, cut to ``limit``, None when empty or "null". NUL characters are
    dropped: PostgreSQL text cannot hold them (SQLite can), so one in a talker alias was a 503."""
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    if not text or text.lower() == "null":
        return None
    return text[:limit]


# ASCII digits only, optionally with a decimal part (trunk-recorder's JSON may carry 851012500.0).
# Python's int() also takes "1_000", "١٢٣" and "1e300" (via float), which no radio client sends.
_NUMBER = re.compile(r"[0-9]{1,25}(?:\.[0-9]{1,25})?")


def parse_id(value: Any) -> int | None:
    """A positive integer that fits a 63-bit column, or None for empty/0/garbage/out of range."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not _NUMBER.fullmatch(text):
            return None
        number = int(text.partition(".")[0])
    return number if 0 < number <= MAX_ID else None


def _datetime(value: Any, *, millis: bool = False) -> datetime | None:
    """A naive-UTC time in the range of rdio_core.bounds, or None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text == "0":
        return None
    if _NUMBER.fullmatch(text):
        seconds = float(text)
        if millis or seconds >= MILLISECONDS_FROM:
            seconds /= 1000.0
        if not 0 < seconds < MILLISECONDS_FROM:  # fromtimestamp overflows long before 10^12 s
            return None
        parsed = datetime.fromtimestamp(seconds, UTC)
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    try:
        return naive_utc(parsed)
    except OutOfRange:
        return None


def strict_json(text: str) -> Any:
    """json.loads without NaN/Infinity (not JSON; PostgreSQL's json type refuses them) and with
    nesting bounded by MAX_JSON_DEPTH. Raises ValueError."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def finite(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):  # 1e999 parses as infinity: the same refusal as the Infinity literal
            raise ValueError(f"{literal} is out of range")
        return value

    try:
        loaded = json.loads(text, parse_constant=refuse, parse_float=finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _depth(loaded) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return loaded


def _depth(value: Any) -> int:
    """Nesting depth of lists/dicts, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node if isinstance(child, dict | list))
    return deepest


def _json_list(value: Any, name: str, ignored: dict[str, str]) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        parsed = strict_json(text)
    except ValueError:
        # Some clients send "101,102" rather than JSON.
        items = [p.strip() for p in text.strip("[]").split(",") if p.strip()]
        numbers = [parse_id(p) for p in items]
        if items and all(n is not None for n in numbers):
            return numbers
        ignored[name] = text[:200]
        return None
    if isinstance(parsed, list):
        return parsed
    ignored[name] = text[:200]
    return None


def _int_list(value: Any, name: str, ignored: dict[str, str]) -> list[int] | None:
    items = _json_list(value, name, ignored)
    if items is None:
        return None
    out = [n for n in (parse_id(v) for v in items) if n is not None]
    return out or None


def from_rdio_fields(fields: dict[str, str]) -> CallData:
    """Build a CallData from Rdio Scanner / SDRTrunk field names."""
    ignored: dict[str, str] = {}
    raw_time = fields.get("dateTime") or fields.get("timestamp")
    date_time = _datetime(fields.get("dateTime")) or _datetime(fields.get("timestamp"), millis=True)
    raw_system = fields.get("system") or fields.get("systemId")
    raw_talkgroup = fields.get("talkgroup") or fields.get("talkgroupId")
    date_time = _required(raw_time, date_time, "dateTime", _BAD_TIME)
    system = _required(raw_system, parse_id(raw_system), "system", _BAD_NUMBER)
    talkgroup = _required(raw_talkgroup, parse_id(raw_talkgroup), "talkgroup", _BAD_NUMBER)
    frequencies = _json_list(fields.get("frequencies"), "frequencies", ignored)
    sources = _json_list(fields.get("sources"), "sources", ignored)
    source = parse_id(fields.get("source"))
    if source is None and sources:
        first = sources[0]
        source = parse_id(first.get("src") if isinstance(first, dict) else first)
    texts: dict[str, Any] = {
        name: clean_text(fields.get(sent.name), sent.limit) for name, sent in SENT_TEXT.items()
    }
    return CallData(
        system=system,
        talkgroup=talkgroup,
        date_time=date_time,
        date_time_sent=clean_text(raw_time),
        source=source,
        frequency=parse_id(fields.get("frequency")),
        frequencies=frequencies,
        sources=sources,
        patches=_int_list(fields.get("patches") or fields.get("patched_talkgroups"), "patches", ignored),
        **texts,
        ignored=ignored,
    )


def from_trunk_recorder(fields: dict[str, str]) -> CallData:
    """Build a CallData from trunk-recorder's ``meta`` JSON plus the form's key/system."""
    raw = fields.get("meta")
    meta: dict[str, Any] = {}
    if raw is not None and raw.strip():
        try:
            loaded = strict_json(raw)
        except ValueError as exc:
            raise IncompleteCall("meta", f"invalid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise IncompleteCall("meta", "expected a JSON object")
        meta = loaded
    merged: dict[str, Any] = {
        "system": fields.get("system") or fields.get("systemId") or meta.get("system"),
        "dateTime": fields.get("dateTime") or meta.get("start_time"),
        "talkgroup": fields.get("talkgroup") or meta.get("talkgroup"),
        "frequency": fields.get("frequency") or meta.get("freq"),
        "frequencies": meta.get("freqList"),
        "sources": meta.get("srcList"),
        "patched_talkgroups": meta.get("patched_talkgroups"),
        "talkgroupLabel": meta.get("talkgroup_tag"),
        "talkgroupName": meta.get("talkgroup_description"),
        "talkgroupGroup": meta.get("talkgroup_group"),
        "talkgroupTag": meta.get("talkgroup_group_tag"),
        "systemLabel": fields.get("systemLabel") or meta.get("short_name"),
        "audioType": meta.get("audio_type"),
    }
    as_text = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in merged.items() if v is not None}
    call = from_rdio_fields({k: str(v) for k, v in as_text.items()})
    call.meta = {k: v for k, v in meta.items() if k not in _META_COPIED} or None
    return call
