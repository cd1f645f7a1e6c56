"""Alert rules (from the config, secrets redacted) and the history of their deliveries.

Deliveries are scoped like calls: a key sees a delivery only if it may see its call. Rules hold no
secret once redacted; a key limited to some systems does not see rules that name only others.
"""

from __future__ import annotations

import base64
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from rdio_api.deps import ReadKey, SessionDep, StateDep, restrict_to_key
from rdio_api.responses import AUTH, BAD_REQUEST, INVALID
from rdio_api.schemas import (
    AlertActionOut,
    AlertAttemptOut,
    AlertDeliveryOut,
    AlertDeliveryPage,
    AlertRuleList,
    AlertRuleOut,
)
from rdio_core.alerts.models import AlertAttempt, AlertDelivery
from rdio_core.alerts.rules import compile_rules
from rdio_core.alerts.settings import AlertRule, WebhookAction
from rdio_core.bounds import Id, OutOfRange, check_id
from rdio_core.models import Call

router = APIRouter(tags=["alerts"])


def _rule_out(rule: AlertRule, targets: list[str]) -> AlertRuleOut:
    actions = [
        AlertActionOut(
            kind=action.kind,
            target=target,
            headers=sorted(action.webhook.headers) if isinstance(action, WebhookAction) else [],
            signed=isinstance(action, WebhookAction),
        )
        for action, target in zip(rule.actions, targets, strict=True)
    ]
    return AlertRuleOut(
        **rule.model_dump(include=set(AlertRuleOut.model_fields) - {"actions", "stage"}),
        stage=rule.stage,
        actions=actions,
    )


@router.get("/api/alerts/rules", response_model=AlertRuleList, responses={**AUTH})
def list_rules(key: ReadKey, state: StateDep) -> AlertRuleList:
    """Every configured rule, disabled ones too, in config order; URLs redacted, no secrets."""
    alerts = state.settings.alerts
    compiled = {c.name: c for c in compile_rules(alerts)}
    out = []
    for rule in alerts.rules:
        if key is not None and rule.systems and not any(key.allows_system(s) for s in rule.systems):
            continue
        known = compiled.get(rule.name)
        targets = known.targets if known is not None else _targets(rule)
        out.append(_rule_out(rule, targets))
    return AlertRuleList(rules=out)


def _targets(rule: AlertRule) -> list[str]:
    from rdio_core.alerts.redact import action_target

    return [action_target(a) for a in rule.actions]


def _encode_cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(str(delivery_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        return check_id(int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()))
    except (OutOfRange, ValueError, UnicodeDecodeError):
        raise HTTPException(400, "Invalid cursor: not one this server issued") from None


@router.get(
    "/api/alerts/deliveries", response_model=AlertDeliveryPage, responses={**BAD_REQUEST, **AUTH, **INVALID}
)
def list_deliveries(
    key: ReadKey,
    session: SessionDep,
    rule: str | None = Query(None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"),
    call_id: Id | None = None,
    status: Literal["pending", "sent", "failed"] | None = None,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(
        None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="next_cursor of the previous page"
    ),
) -> AlertDeliveryPage:
    """Deliveries newest first, each with its attempts; only those of calls the key may see."""
    stmt = restrict_to_key(
        select(AlertDelivery, Call.system_id, Call.talkgroup, Call.talkgroup_label, Call.date_time).join(
            Call, Call.id == AlertDelivery.call_id
        ),
        key,
    )
    if rule is not None:
        stmt = stmt.where(AlertDelivery.rule == rule)
    if call_id is not None:
        stmt = stmt.where(AlertDelivery.call_id == call_id)
    if status is not None:
        stmt = stmt.where(AlertDelivery.status == status)
    if cursor:
        stmt = stmt.where(AlertDelivery.id < _decode_cursor(cursor))
    rows = session.execute(stmt.order_by(AlertDelivery.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[int, list[AlertAttemptOut]] = {row[0].id: [] for row in rows}
    if attempts:
        found = session.execute(
            select(AlertAttempt).where(AlertAttempt.delivery_id.in_(list(attempts))).order_by(AlertAttempt.id)
        ).scalars()
        for attempt in found:
            attempts[attempt.delivery_id].append(AlertAttemptOut.model_validate(attempt))
    items = [
        AlertDeliveryOut.model_validate(
            {
                **{name: getattr(delivery, name) for name in _DELIVERY_COLUMNS},
                "system": system,
                "talkgroup": talkgroup,
                "talkgroup_label": label,
                "call_time": when,
                "attempt_log": attempts[delivery.id],
            }
        )
        for delivery, system, talkgroup, label, when in rows
    ]
    next_cursor = _encode_cursor(rows[-1][0].id) if more and rows else None
    return AlertDeliveryPage(deliveries=items, next_cursor=next_cursor)


_DELIVERY_COLUMNS = tuple(
    name
    for name in AlertDeliveryOut.model_fields
    if name not in ("system", "talkgroup", "talkgroup_label", "call_time", "attempt_log")
)
