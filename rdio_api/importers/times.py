"""Call times as archives hold them, turned into what the upload parser reads (epoch seconds).

Archives disagree: sdrtrunk-rdio-api's SQLite holds ``2024-05-01 12:00:00.000000`` (naive, written
as UTC) or ``...+00:00``; rdio-scanner v6 a DATETIME, v7 epoch milliseconds; trunk-recorder epoch
seconds. A naive time is taken in ``naive_zone`` (UTC unless the user says the archive was written
in local time), an aware one as it says.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Any

# Go's time.String(): "2023-03-04 05:06:07.123 +0000 UTC", which some Go SQLite drivers store.
_GO_TIME = re.compile(r"^(?P<stamp>\S+ \S+) (?P<offset>[+-]\d{4})(?: [A-Za-z]+)?$")


def epoch_text(value: Any, naive_zone: tzinfo) -> str | None:
    """Epoch seconds as text for ``from_rdio_fields``' dateTime, or None when unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        number = float(value)
        return f"{number / 1000 if number > 1e11 else number:.6f}"
    else:
        text = str(value).strip()
        if not text:
            return None
        if text.replace(".", "", 1).isdigit():
            number = float(text)
            return f"{number / 1000 if number > 1e11 else number:.6f}"
        go = _GO_TIME.match(text)
        if go is not None:
            text = go.group("stamp") + go.group("offset")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_zone)
    try:
        return f"{moment.timestamp():.6f}"
    except (OverflowError, OSError, ValueError):
        return None
