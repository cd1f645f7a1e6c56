"""What an alert says: the JSON document a webhook receives, its signature, and the text of an
Apprise notification.

Signing: ``X-Rdio-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` with the
Unix time in ``X-Rdio-Timestamp``. The timestamp is inside the signed text, so a receiver that
refuses timestamps older than a few minutes cannot be fed a captured request again (a replay); the
body is signed as the exact bytes sent, so the receiver verifies before it parses. It is the scheme
Stripe and Slack use, which receivers' libraries already know. :func:`verify` is the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from rdio_core.alerts.models import AlertDelivery
from rdio_core.calls import CallSummary, StoredCall

if TYPE_CHECKING:
    from rdio_core.settings import Settings

SIGNATURE_HEADER = "X-Rdio-Signature"
TIMESTAMP_HEADER = "X-Rdio-Timestamp"
DELIVERY_HEADER = "X-Rdio-Delivery"
#: How old a timestamp :func:`verify` accepts by default (seconds).
REPLAY_WINDOW = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Rdio-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, signature: str, body: bytes, window: float = REPLAY_WINDOW) -> bool:
    """A receiver's check: the signature is ours for these exact bytes, and recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > window:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


class AlertUnit(BaseModel):
    unit: int
    alias: str | None = None
    emergency: bool = False


class _AlertLinks(BaseModel):
    id: int
    url: str = Field(description="the call's page on the console")
    audio_url: str = Field(description="its audio (needs a read key, as every read route)")


class AlertCall(CallSummary, _AlertLinks):
    """The call of an alert: its id and links, every summary field of ``rdio_core.calls`` (as a
    ``/api/calls`` item has them), then what alerts add."""

    duration_seconds: float | None
    units: list[AlertUnit]
    tones: list[dict[str, Any]] | None = Field(description="null: not analysed (yet)")
    transcript: str | None


class AlertDocument(BaseModel):
    """The body of a webhook POST."""

    event: str = "alert"
    delivery_id: int
    rule: str
    stage: str = Field(description="upload | tones | transcript: what the rule waited for")
    matched: str | None = Field(description="the words, pattern match, tone or talkgroup that matched")
    fired_at: str | None
    call: AlertCall


def public_base(settings: Settings) -> str:
    """Where links in alerts point: ``alerts.public_url``, else this server's own address."""
    if settings.alerts.public_url:
        return settings.alerts.public_url.rstrip("/")
    scheme = "https" if settings.tls.cert else "http"
    return f"{scheme}://{settings.server.host}:{settings.server.port}"


def build(
    settings: Settings,
    delivery: AlertDelivery,
    call: StoredCall,
    units: list[AlertUnit],
    transcript: str | None,
) -> AlertDocument:
    base = public_base(settings)
    return AlertDocument(
        delivery_id=delivery.id,
        rule=delivery.rule,
        stage=delivery.stage,
        matched=delivery.matched_text,
        fired_at=_iso(delivery.created_at),
        call=AlertCall(
            **call.model_dump(include=_SUMMARY),
            id=call.id,
            url=f"{base}/calls/{call.id}",
            audio_url=f"{base}/api/calls/{call.id}/audio",
            duration_seconds=call.duration_seconds,
            units=units,
            tones=call.tones,
            transcript=transcript,
        ),
    )


_SUMMARY = set(CallSummary.model_fields)


def notification(document: AlertDocument) -> tuple[str, str]:
    """(title, body) of an Apprise notification: short enough for a phone's lock screen."""
    call = document.call
    where = call.talkgroup_title()
    system = call.system_label or f"system {call.system}"
    title = f"{document.rule}: {where}"
    lines = [f"{where} ({system})"]
    if document.matched:
        lines.append(f"Matched: {document.matched}")
    if call.units:
        lines.append("Units: " + ", ".join(u.alias or str(u.unit) for u in call.units))
    if call.transcript:
        lines.append(f"“{call.transcript}”")
    lines.append(call.url)
    return title, "\n".join(lines)
