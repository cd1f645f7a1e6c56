"""The alert outbox: one delivery per (rule, action, call), its attempts, and the cooldown clock.

A delivery row is written in the same transaction as what made the rule match (the call at upload,
the tones, the transcript), so an alert is never lost to a crash or to Redis being down: the
sweeper publishes any ``pending`` row whose message did not get through.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from rdio_core.models import Base, BigId, utcnow


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # written with its cause; to be sent (or retried after a failed attempt)
    SENT = "sent"  # an attempt succeeded
    FAILED = "failed"  # out of attempts, or a failure retrying cannot fix


class AlertDelivery(Base):
    __tablename__ = "alert_deliveries"
    __table_args__ = (
        # A rule fires once per call: a re-run of the tone analysis or a re-transcription does not
        # alert again, and two racing writers cannot both insert it.
        UniqueConstraint("call_id", "rule", "action_index", name="uq_alert_deliveries_call_rule_action"),
        Index("ix_alert_deliveries_status_updated", "status", "updated_at"),
        Index("ix_alert_deliveries_rule", "rule", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(200))
    action_index: Mapped[int] = mapped_column(Integer)
    action_kind: Mapped[str] = mapped_column(String(20))  # webhook | apprise
    target: Mapped[str] = mapped_column(String(2000))  # redacted: no secrets, no credentials
    stage: Mapped[str] = mapped_column(String(20))  # upload | tones | transcript
    matched_text: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[str | None] = mapped_column(Text)  # the text the rule matched, as it was then
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)  # an attempt in flight
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)  # a retry's due time
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)


class AlertAttempt(Base):
    __tablename__ = "alert_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("alert_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class AlertCooldown(Base):
    """When a rule last fired on a talkgroup. Taken with a compare-and-set in the firing
    transaction, so two workers finishing calls of one talkgroup at once cannot both fire."""

    __tablename__ = "alert_cooldowns"

    rule: Mapped[str] = mapped_column(String(200), primary_key=True)
    system_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    talkgroup: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    fired_at: Mapped[datetime] = mapped_column(DateTime)
