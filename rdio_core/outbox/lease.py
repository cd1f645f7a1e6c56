"""Claiming an outbox row under a lease, one compare-and-set for every table that needs it.

Transcription jobs and alert deliveries are both rows a worker takes for one attempt: the claim is a
single UPDATE that succeeds only while the row is claimable and under its attempt limit, so a
duplicate message (a sweeper republish, a Redis redelivery) never runs an attempt twice while
another is in flight. When the claim fails, the row says why (:class:`ClaimOutcome`); a row that is
claimable but out of attempts is ended by the same call instead of being retried forever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Executable, update
from sqlalchemy.orm import Session


class ClaimOutcome(StrEnum):
    """What trying to claim a row found."""

    CLAIMED = "claimed"  # this worker holds it now, under a lease
    FINAL = "final"  # ended already (completed, sent, failed, skipped): nothing to do
    BUSY = "busy"  # another worker holds a live lease: look again when it lapses
    GAVE_UP = "gave_up"  # out of attempts: ended as failed by this claim
    MISSING = "missing"  # no such row (deleted with its call)


def changed(session: Session, stmt: Executable) -> int:
    """How many rows an UPDATE changed: the compare-and-set's answer."""
    result = session.execute(stmt)
    assert isinstance(result, CursorResult)  # what an UPDATE returns (typed as any Result)
    return result.rowcount


@dataclass(frozen=True)
class LeasedTable:
    """How one table's rows are claimed. The model has ``id``, ``attempts``, ``error`` and
    ``lease_expires_at`` columns; the rest differs per table and is given here."""

    model: Any
    #: Rows an attempt may take at ``now`` (waiting, or held under a lapsed lease).
    claimable: Callable[[datetime], ColumnElement[bool]]
    #: Whether a row is ended (no attempt will ever take it again).
    is_final: Callable[[Any], bool]
    #: Extra values a claim sets at ``now`` (a job's status, worker, started_at).
    on_claim: Callable[[datetime], dict[str, Any]]
    #: Extra values ending a row out of attempts sets at ``now`` (its failed status).
    on_give_up: Callable[[datetime], dict[str, Any]]


def claim(
    session: Session,
    table: LeasedTable,
    row_id: int,
    lease_seconds: float,
    max_attempts: int,
    now: datetime,
    ended: Callable[[Session], None] | None = None,
) -> tuple[ClaimOutcome, Any]:
    """Take the next attempt of ``row_id`` under a lease; the outcome and the row as it is now.
    ``ended`` runs in the transaction that ends a row out of attempts (a job's live-feed event)."""
    model = table.model
    taken = changed(
        session,
        update(model)
        .where(model.id == row_id, table.claimable(now), model.attempts < max_attempts)
        .values(
            attempts=model.attempts + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
            **table.on_claim(now),
        ),
    )
    session.commit()
    row = session.get(model, row_id)
    if row is None:
        return ClaimOutcome.MISSING, None
    if taken:
        return ClaimOutcome.CLAIMED, row
    if table.is_final(row):
        return ClaimOutcome.FINAL, row
    if row.lease_expires_at is not None and row.lease_expires_at >= now:
        return ClaimOutcome.BUSY, row
    # Claimable but out of attempts: a poison row. End it instead of looping forever.
    gave_up = changed(
        session,
        update(model)
        .where(model.id == row_id, table.claimable(now))
        .values(
            error=f"gave up after {row.attempts} attempts; last error: {row.error or 'worker lost'}",
            lease_expires_at=None,
            updated_at=now,
            **table.on_give_up(now),
        ),
    )
    if gave_up and ended is not None:
        ended(session)
    session.commit()
    return (ClaimOutcome.GAVE_UP if gave_up else ClaimOutcome.FINAL), row
