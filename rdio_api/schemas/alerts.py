"""Alert rules and deliveries, as ``/api/alerts`` answers them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rdio_api.schemas.base import Rows, UtcTime


class AlertActionOut(BaseModel):
    """An action as the API shows it: never a secret, a credential or a header's value."""

    kind: Literal["webhook", "apprise"]
    target: str = Field(description="the URL, redacted (credentials and tokens replaced by ***)")
    headers: list[str] = Field(default_factory=list, description="names of extra webhook headers")
    signed: bool = Field(description="POSTs carry X-Rdio-Signature (every webhook)")


class AlertRuleOut(BaseModel):
    """A rule of ``alerts.rules`` and the stage it fires at."""

    name: str
    enabled: bool
    stage: Literal["upload", "tones", "transcript"] = Field(
        description="what the rule waits for: the transcript (text rules), tones, or nothing (upload)"
    )
    words: list[str]
    phrases: list[str]
    patterns: list[str]
    systems: list[int]
    talkgroups: list[int]
    units: list[int]
    tones: list[str | float]
    cooldown_seconds: float
    actions: list[AlertActionOut]


class AlertRuleList(BaseModel):
    rules: list[AlertRuleOut]


class AlertAttemptOut(Rows):
    """One try at sending a delivery."""

    at: UtcTime
    ok: bool
    status_code: int | None = Field(description="the receiver's HTTP status (webhooks), else null")
    error: str | None
    duration_ms: float


class AlertDeliveryOut(Rows):
    """One rule's action for one call, with every attempt (oldest first)."""

    id: int
    call_id: int
    system: int
    talkgroup: int
    talkgroup_label: str | None
    call_time: UtcTime
    rule: str
    action_index: int
    action_kind: Literal["webhook", "apprise"]
    target: str = Field(description="redacted, as in /api/alerts/rules")
    stage: Literal["upload", "tones", "transcript"]
    matched_text: str | None
    status: Literal["pending", "sent", "failed"]
    attempts: int
    error: str | None = Field(description="the last failure, if any")
    created_at: UtcTime
    updated_at: UtcTime
    sent_at: UtcTime | None
    next_attempt_at: UtcTime | None = Field(description="when a retry is due, while one is")
    attempt_log: list[AlertAttemptOut]


class AlertDeliveryPage(BaseModel):
    deliveries: list[AlertDeliveryOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
