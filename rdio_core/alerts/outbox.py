"""Alert deliveries as an outbox: fired in the caller's transaction, claimed under a lease, settled
with every attempt recorded. The same compare-and-set lease as transcription jobs
(:mod:`rdio_core.outbox.lease`): a duplicate message (a sweeper republish, a Redis redelivery) can never send
an alert twice while another attempt is in flight, nor resend one that was sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Update, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import units
from rdio_core.alerts.models import AlertAttempt, AlertCooldown, AlertDelivery, DeliveryStatus
from rdio_core.alerts.rules import CallFacts, CompiledRule, call_units, compile_rules
from rdio_core.alerts.settings import Stage
from rdio_core.calls import StoredCall
from rdio_core.models import Call, utcnow
from rdio_core.outbox import lease
from rdio_core.outbox.lease import ClaimOutcome, LeasedTable, changed

if TYPE_CHECKING:  # rdio_core.settings mounts this package's settings: no import cycle at run time
    from rdio_core.settings import Settings

log = logging.getLogger(__name__)

#: Statuses an HTTP receiver answers that retrying cannot change (bad request, auth, not found...).
#: 408, 425 and 429 mean "later" and are retried like 5xx and network errors.
RETRIED_4XX = (408, 425, 429)


def has_rules(settings: Settings, stage: Stage) -> bool:
    """Whether any enabled rule fires at ``stage``: when none does, callers skip all alert work."""
    return any(rule.stage == stage for rule in compile_rules(settings.alerts))


def alerts_wanted(call: StoredCall) -> bool:
    """False for a call brought in from an archive without ``--alerts`` (rdio_api.importers): last
    year's pages must not ring today, at upload, at tone analysis or when its transcript lands."""
    origin = call.meta.get("import") if isinstance(call.meta, dict) else None
    return not (isinstance(origin, dict) and origin.get("alerts") is False)


def call_facts(call: StoredCall, session: Session | None = None) -> CallFacts:
    """The facts of ``call`` the rules test. Its units come from the upload's fields (``source``,
    srcList), and with a ``session`` also from its stored transmissions (rdio_core.units)."""
    tones = call.tones
    stored = units.unit_ids(session, call.id, call.source) if session is not None else set()
    return CallFacts(
        system=call.system,
        talkgroup=call.talkgroup,
        units=call_units(call.source, call.sources, stored),
        tones=tuple(t for t in tones if isinstance(t, dict)) if isinstance(tones, list) else None,
    )


def fire_alerts(
    session: Session, settings: Settings, call: StoredCall, stage: Stage, transcript: str | None = None
) -> list[int]:
    """Evaluate the enabled rules of ``stage`` against ``call`` and add a pending delivery per
    action of each rule that matches, in the caller's transaction; their ids, to publish after the
    commit (:mod:`rdio_core.pipeline`'s deliveries publisher). With no rule for the stage this does no
    database work at all (the upload path stays as fast as without alerts)."""
    rules = [rule for rule in compile_rules(settings.alerts) if rule.stage == stage]
    if not rules or not alerts_wanted(call):
        return []
    # At upload the transmissions are the upload's own fields: no query. Later, only for unit rules.
    wants_units = stage != "upload" and any(rule.rule.units for rule in rules)
    facts = call_facts(call, session if wants_units else None)
    now = utcnow()
    ids: list[int] = []
    for rule in rules:
        matched = rule.match(facts, transcript)
        if matched is None:
            continue
        if _fired_before(session, call.id, rule.name):
            continue
        if rule.rule.cooldown_seconds > 0 and not _take_cooldown(session, rule, call, now):
            log.info("call %s: rule %r matched but its talkgroup is cooling down", call.id, rule.name)
            continue
        new = _insert_deliveries(session, rule, call.id, stage, matched, transcript, now)
        log.info("call %s: rule %r fired at %s (%s): deliveries %s", call.id, rule.name, stage, matched, new)
        ids += new
    return ids


def _fired_before(session: Session, call_id: int, rule: str) -> bool:
    """A rule fires once per call (a re-transcription or a second tone analysis does not repeat it)."""
    stmt = select(exists().where(AlertDelivery.call_id == call_id, AlertDelivery.rule == rule))
    return bool(session.execute(stmt).scalar())


def _insert(session: Session, model: type[Any]) -> Any:
    """INSERT for ``model`` in the session's dialect, for ON CONFLICT DO NOTHING."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _take_cooldown(session: Session, rule: CompiledRule, call: StoredCall, now: datetime) -> bool:
    """Start the cooldown of (rule, talkgroup) unless it is running; True when this caller did.

    Compare-and-set in the firing transaction: on PostgreSQL a second transaction's UPDATE waits
    for the first's row lock, then finds the new time and changes nothing; its INSERT of a missing
    row meets the first's and does nothing. SQLite has one writer at a time."""
    since = now - timedelta(seconds=rule.rule.cooldown_seconds)
    key = (
        AlertCooldown.rule == rule.name,
        AlertCooldown.system_id == call.system,
        AlertCooldown.talkgroup == call.talkgroup,
    )
    stmt: Update = update(AlertCooldown).where(*key, AlertCooldown.fired_at <= since).values(fired_at=now)
    if changed(session, stmt):
        return True
    insert = _insert(session, AlertCooldown).values(
        rule=rule.name, system_id=call.system, talkgroup=call.talkgroup, fired_at=now
    )
    taken = session.execute(insert.on_conflict_do_nothing().returning(AlertCooldown.rule))
    return taken.scalar_one_or_none() is not None


def _insert_deliveries(
    session: Session,
    rule: CompiledRule,
    call_id: int,
    stage: Stage,
    matched: str,
    transcript: str | None,
    now: datetime,
) -> list[int]:
    ids = []
    for index, action in enumerate(rule.rule.actions):
        stmt = (
            _insert(session, AlertDelivery)
            .values(
                call_id=call_id,
                rule=rule.name,
                action_index=index,
                action_kind=action.kind,
                target=rule.targets[index],
                stage=stage,
                matched_text=matched[:2000],
                transcript=transcript,
                status=DeliveryStatus.PENDING,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(AlertDelivery.id)
        )
        new = session.execute(stmt).scalar_one_or_none()
        if new is not None:
            ids.append(new)
    return ids


# -- delivering --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    delivery: AlertDelivery | None = None
    call: Call | None = None


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Pending with no attempt in flight (no lease, or a lapsed one: its worker is gone)."""
    free = or_(AlertDelivery.lease_expires_at.is_(None), AlertDelivery.lease_expires_at < now)
    return and_(AlertDelivery.status == DeliveryStatus.PENDING, free)


LEASED = LeasedTable(
    model=AlertDelivery,
    claimable=_claimable,
    is_final=lambda delivery: delivery.status != DeliveryStatus.PENDING,
    on_claim=lambda now: {"next_attempt_at": None},
    on_give_up=lambda now: {"status": DeliveryStatus.FAILED},
)


def claim(factory: sessionmaker[Session], delivery_id: int, lease_seconds: float, max_attempts: int) -> Claim:
    """Take the next attempt of a pending delivery under a lease."""
    with factory() as session:
        outcome, delivery = lease.claim(session, LEASED, delivery_id, lease_seconds, max_attempts, utcnow())
        if outcome is ClaimOutcome.CLAIMED:
            return Claim(outcome, delivery, session.get(Call, delivery.call_id))
        return Claim(outcome, delivery)


@dataclass(frozen=True)
class AttemptResult:
    """One try at sending: what the receiver answered, or why nothing was answered."""

    ok: bool
    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    retryable: bool = True


def settle(
    factory: sessionmaker[Session],
    delivery: AlertDelivery,
    result: AttemptResult,
    retry_in: float | None,
) -> DeliveryStatus:
    """Record the attempt and move the delivery: ``sent``, ``failed``, or back to ``pending`` due
    ``retry_in`` seconds from now. The attempt row is always written (the request went out); the
    delivery moves only if no later attempt has claimed it since (its lease lapsed)."""
    now = utcnow()
    values: dict[str, Any]
    if result.ok:
        status, values = DeliveryStatus.SENT, {"sent_at": now, "error": None}
    elif retry_in is None:
        status, values = DeliveryStatus.FAILED, {"error": result.error}
    else:
        due = now + timedelta(seconds=retry_in)
        status, values = DeliveryStatus.PENDING, {"error": result.error, "next_attempt_at": due}
    with factory() as session:
        session.add(
            AlertAttempt(
                delivery_id=delivery.id,
                at=now,
                ok=result.ok,
                status_code=result.status_code,
                error=result.error,
                duration_ms=round(result.duration_ms, 1),
            )
        )
        session.execute(
            update(AlertDelivery)
            .where(
                AlertDelivery.id == delivery.id,
                AlertDelivery.status == DeliveryStatus.PENDING,
                AlertDelivery.attempts == delivery.attempts,
            )
            .values(status=status, lease_expires_at=None, updated_at=now, **values)
        )
        session.commit()
    return status


def fail(factory: sessionmaker[Session], delivery: AlertDelivery, reason: str) -> None:
    """End a claimed delivery that cannot be attempted (its rule or action left the config)."""
    settle(factory, delivery, AttemptResult(False, 0.0, error=reason, retryable=False), None)


# -- sweeping ---------------------------------------------------------------------------------------


def sweep_candidates(
    session: Session, now: datetime, stale_before: datetime, waiting: int, limit: int = 200
) -> list[int]:
    """Pending deliveries to (re)publish, touched so a second sweeper (another API process) skips
    them, and locked with SKIP LOCKED on PostgreSQL.

    Attempts whose worker vanished (a lapsed lease) always; deliveries due for a while with no
    attempt in flight only when the broker's ``alerts`` queue holds fewer waiting messages than
    there are such deliveries: a message was lost (the broker was down when it was published),
    and republishing every one of them is cheap (a duplicate's claim is a no-op). While the broker
    holds enough messages, nothing is republished, so a stopped alerts worker does not make the
    queue grow by one copy per delivery per sweep."""
    due = func.coalesce(AlertDelivery.next_attempt_at, AlertDelivery.updated_at) < stale_before
    idle_due = and_(
        AlertDelivery.status == DeliveryStatus.PENDING, AlertDelivery.lease_expires_at.is_(None), due
    )
    stuck = [and_(AlertDelivery.status == DeliveryStatus.PENDING, AlertDelivery.lease_expires_at < now)]
    overdue = session.execute(select(func.count()).select_from(AlertDelivery).where(idle_due)).scalar_one()
    if overdue > waiting:
        stuck.append(idle_due)
    stmt = select(AlertDelivery).where(or_(*stuck)).order_by(AlertDelivery.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.execute(stmt).scalars())
    for row in rows:
        row.updated_at = now
        row.next_attempt_at = None
        row.lease_expires_at = None  # the worker that held it is gone; the next claim may take it
    return [row.id for row in rows]
