"""Map Rdio Scanner upload fields (SDRTrunk, trunk-recorder, others) onto one call record.

Required fields that are missing or unreadable produce the exact Rdio Scanner messages clients
know. Optional fields that are unreadable are dropped and noted rather than failing the call:
SDRTrunk never retries, so rejecting a call for a malformed label would lose it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class IncompleteCall(Exception):
    """A required field is missing; message is Rdio Scanner's wording."""

    def __init__(self, what: str) -> None:
        super().__init__(f"Incomplete call data: no {what}")
        self.message = f"Incomplete call data: no {what}"


@dataclass
class CallData:
    system: int
    talkgroup: int
    date_time: datetime  # naive UTC
    source: int | None = None
    frequency: int | None = None
    frequencies: list[Any] | None = None
    sources: list[Any] | None = None
    patches: list[int] | None = None
    talkgroup_label: str | None = None
    talkgroup_group: str | None = None
    talkgroup_tag: str | None = None
    talkgroup_name: str | None = None
    system_label: str | None = None
    talker_alias: str | None = None
    site: str | None = None
    audio_name: str | None = None
    audio_type: str | None = None
    meta: dict[str, Any] | None = None
    ignored: dict[str, str] = field(default_factory=dict)


def _text(value: Any, limit: int = 200) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() == "null":
        return None
    return text[:limit]


def _int(value: Any) -> int | None:
    """A positive integer, or None for empty/0/garbage (unknown)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            number = float(value) if any(c in value for c in ".eE") else int(value)
        else:
            number = value
        if isinstance(number, float):
            if not math.isfinite(number):
                return None
            number = int(number)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _datetime(value: Any, *, millis: bool = False) -> datetime | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text or text == "0":
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).replace(tzinfo=None)
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    if millis or seconds > 1e11:  # a 13-digit value is milliseconds whatever the field name
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def _json_list(value: Any, name: str, ignored: dict[str, str]) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        # Some clients send "101,102" rather than JSON.
        items = [p.strip() for p in text.strip("[]").split(",") if p.strip()]
        if items and all(p.lstrip("-").isdigit() for p in items):
            return [int(p) for p in items]
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
    out = [n for n in (_int(v) for v in items) if n is not None]
    return out or None


def from_rdio_fields(fields: dict[str, str]) -> CallData:
    """Build a CallData from Rdio Scanner / SDRTrunk field names."""
    ignored: dict[str, str] = {}
    date_time = _datetime(fields.get("dateTime")) or _datetime(fields.get("timestamp"), millis=True)
    system = _int(fields.get("system") or fields.get("systemId"))
    talkgroup = _int(fields.get("talkgroup") or fields.get("talkgroupId"))
    if date_time is None:
        raise IncompleteCall("dateTime")
    if system is None:
        raise IncompleteCall("system")
    if talkgroup is None:
        raise IncompleteCall("talkgroup")
    frequencies = _json_list(fields.get("frequencies"), "frequencies", ignored)
    sources = _json_list(fields.get("sources"), "sources", ignored)
    source = _int(fields.get("source"))
    if source is None and sources:
        first = sources[0]
        source = _int(first.get("src") if isinstance(first, dict) else first)
    return CallData(
        system=system,
        talkgroup=talkgroup,
        date_time=date_time,
        source=source,
        frequency=_int(fields.get("frequency")),
        frequencies=frequencies,
        sources=sources,
        patches=_int_list(fields.get("patches") or fields.get("patched_talkgroups"), "patches", ignored),
        talkgroup_label=_text(fields.get("talkgroupLabel")),
        talkgroup_group=_text(fields.get("talkgroupGroup")),
        talkgroup_tag=_text(fields.get("talkgroupTag")),
        talkgroup_name=_text(fields.get("talkgroupName")),
        system_label=_text(fields.get("systemLabel")),
        talker_alias=_text(fields.get("talkerAlias")),
        site=_text(fields.get("site"), 100),
        audio_name=_text(fields.get("audioName"), 255),
        audio_type=_text(fields.get("audioType"), 100),
        ignored=ignored,
    )


def from_trunk_recorder(fields: dict[str, str]) -> CallData:
    """Build a CallData from trunk-recorder's ``meta`` JSON plus the form's key/system."""
    raw = fields.get("meta")
    meta: dict[str, Any] = {}
    if raw is not None and raw.strip():
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError:
            raise IncompleteCall("meta (invalid JSON)") from None
        if not isinstance(loaded, dict):
            raise IncompleteCall("meta (expected a JSON object)")
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
    call.meta = meta or None
    return call
