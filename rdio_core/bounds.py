"""The ranges every input is checked against where it enters (query, path, body, upload form).

Ids and radio numbers are stored in 64-bit signed columns (PostgreSQL BIGINT, SQLite INTEGER), so
anything at or above 2^63 used to reach the driver and come back as a 500 (or, in the upload writer,
as a 503 "try again"). Times are stored naive UTC; converting an aware time at the year limits
(``9999-12-31T23:59:59-05:00``) overflows ``datetime``, and the duplicate window arithmetic
overflowed near them too. Both are client mistakes and are rejected here, as 4xx.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

MAX_ID = 2**63 - 1
# Calls are radio traffic recorded by a computer: nothing before 1970 (epoch 0) exists, and a
# recorder's clock past 2100 is wrong. The bounds leave room for the duplicate window either side.
MIN_TIME = datetime(1970, 1, 2)
MAX_TIME = datetime(2100, 1, 1)


class OutOfRange(ValueError):
    """A value outside the ranges above; its message names the range."""


def naive_utc(value: datetime) -> datetime:
    """Aware -> naive UTC, naive taken as UTC; OutOfRange outside [MIN_TIME, MAX_TIME)."""
    if value.tzinfo is not None:
        # Checked before converting: astimezone itself overflows at the year limits.
        if not MIN_TIME.replace(tzinfo=UTC) <= value < MAX_TIME.replace(tzinfo=UTC):
            raise OutOfRange(_time_message())
        value = value.astimezone(UTC).replace(tzinfo=None)
    if not MIN_TIME <= value < MAX_TIME:
        raise OutOfRange(_time_message())
    return value


def check_id(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise OutOfRange(f"must be between 0 and {MAX_ID}")
    return value


def _time_message() -> str:
    return f"time must be between {MIN_TIME.date().isoformat()} and {MAX_TIME.date().isoformat()} (UTC)"


def _plain_digits(value: object) -> object:
    """Query strings reach pydantic as text, and its lax int() takes "1_000", "\u0661\u0662" and
    " 7 "; an id is ASCII digits only."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise OutOfRange(f"must be a whole number from 0 to {MAX_ID}, written with the digits 0-9")
    return value


# For FastAPI/pydantic signatures: `call_id: Id`, `since: Time | None = None`.
# The constraints before the validator: pydantic then writes them as JSON Schema minimum/maximum.
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_plain_digits)]
Time = Annotated[datetime, AfterValidator(naive_utc)]


def _naive(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def _aware_iso(value: datetime) -> str:
    """Rows hold naive UTC (portable across SQLite and PostgreSQL); the API shows aware UTC."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


UtcTime = Annotated[
    datetime,
    AfterValidator(_naive),
    PlainSerializer(_aware_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A stored time: naive UTC in Python (as the columns hold it), ISO 8601 with ``+00:00`` in JSON,
e.g. ``2026-01-03T00:31:24.796000+00:00`` (pydantic alone would write ``Z``)."""
