"""``deliver_alert``: one attempt at one alert delivery, on the ``alerts`` queue (never ``gpu``: a
slow webhook must not hold a transcription thread).

Each run claims the delivery under a lease (:func:`rdio_core.alerts.outbox.claim`), sends it, and
records the attempt: status code or error and duration. A failure that may pass (a network error,
a 5xx, 408/425/429) raises :class:`TransientError`, which Celery retries with exponential backoff
and full jitter like every task (rdio_tasks.task_base), capped by
``alerts.retry_backoff_max_seconds``; the delivery's attempt counter in the database bounds the
retries (``alerts.max_attempts``), so a sweeper republish or a Redis redelivery cannot add more.
A 4xx other than those, or an Apprise URL that no longer loads, fails at once: retrying cannot fix
it. Each action kind has its notifier (:data:`NOTIFIERS`): a webhook POSTs
:class:`rdio_core.alerts.document.AlertDocument`, signed (see that module); an Apprise action goes
through Apprise.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from rdio_core import units
from rdio_core.alerts import document, outbox, redact
from rdio_core.alerts.document import AlertDocument, AlertUnit
from rdio_core.alerts.models import AlertDelivery
from rdio_core.alerts.outbox import AttemptResult
from rdio_core.alerts.rules import call_units
from rdio_core.alerts.settings import ActionKind, AlertAction, AppriseAction, WebhookAction
from rdio_core.calls import StoredCall
from rdio_core.models import Call, JobStatus, TranscriptionJob
from rdio_core.outbox import ClaimOutcome, TaskRef
from rdio_tasks.celery_app import app
from rdio_tasks.context import WorkerContext, context
from rdio_tasks.errors import TransientError, describe
from rdio_tasks.task_base import RetryingTask, backoff_cap

log = logging.getLogger(__name__)

USER_AGENT = "rdio-api-alerts/1"


def _units(ctx: WorkerContext, call: Call) -> list[AlertUnit]:
    with ctx.factory() as session:
        heard = units.call_transmissions(session, [call], ctx.settings.units).get(call.id, [])
    found = [AlertUnit(unit=u.unit, alias=u.alias, emergency=u.emergency) for u in units.summarize(heard)]
    if found:
        return found
    return [AlertUnit(unit=u) for u in sorted(call_units(call.source, call.sources))]


def _transcript(ctx: WorkerContext, delivery: AlertDelivery) -> str | None:
    """The text the rule matched; for an upload or tone alert, the transcript if it is done by now."""
    if delivery.transcript is not None:
        return delivery.transcript
    with ctx.factory() as session:
        text = (
            session.query(TranscriptionJob.text)
            .filter(
                TranscriptionJob.call_id == delivery.call_id, TranscriptionJob.status == JobStatus.COMPLETED
            )
            .order_by(TranscriptionJob.id.desc())
            .limit(1)
            .scalar()
        )
    return text


class Notifier(ABC):
    """Sends one attempt of one kind of action. One subclass per kind (:data:`NOTIFIERS`)."""

    @abstractmethod
    def send(self, doc: AlertDocument, timeout: float) -> AttemptResult: ...


@dataclass(frozen=True)
class WebhookNotifier(Notifier):
    """POSTs the signed document (rdio_core.alerts.document) once."""

    action: WebhookAction

    def send(self, doc: AlertDocument, timeout: float) -> AttemptResult:
        hook = self.action.webhook
        body = doc.model_dump_json().encode()
        stamp = int(time.time())
        headers = {
            **hook.headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            document.TIMESTAMP_HEADER: str(stamp),
            document.SIGNATURE_HEADER: document.sign(hook.secret, stamp, body),
            document.DELIVERY_HEADER: str(doc.delivery_id),
        }
        started = time.perf_counter()
        try:
            response = httpx.post(hook.url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return AttemptResult(False, (time.perf_counter() - started) * 1000, error=describe(exc))
        elapsed = (time.perf_counter() - started) * 1000
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(True, elapsed, code)
        retryable = code >= 500 or code in outbox.RETRIED_4XX
        text = " ".join(response.text[:200].split())
        return AttemptResult(False, elapsed, code, f"HTTP {code}" + (f": {text}" if text else ""), retryable)


@dataclass(frozen=True)
class AppriseNotifier(Notifier):
    """One Apprise notification; Apprise's own warnings are the error text when it fails. Apprise
    takes no timeout per call: each plugin applies its own."""

    action: AppriseAction

    def send(self, doc: AlertDocument, timeout: float) -> AttemptResult:
        import apprise

        started = time.perf_counter()
        notifier = apprise.Apprise()
        if not notifier.add(self.action.apprise):
            return AttemptResult(False, 0.0, error="Apprise does not accept this URL", retryable=False)
        title, body = document.notification(doc)
        with apprise.LogCapture(level=logging.WARNING) as captured:
            ok = notifier.notify(title=title, body=body)
            said = captured.getvalue()
        elapsed = (time.perf_counter() - started) * 1000
        if ok:
            return AttemptResult(True, elapsed)
        lines = [line.split(" - ", 2)[-1] for line in str(said).strip().splitlines() if line.strip()]
        return AttemptResult(
            False, elapsed, error=("; ".join(lines[-3:]) or "Apprise reported a failure")[:2000]
        )


#: The notifier of each action kind.
NOTIFIERS: dict[ActionKind, Callable[[Any], Notifier]] = {
    "webhook": WebhookNotifier,
    "apprise": AppriseNotifier,
}


def notifier(action: AlertAction) -> Notifier:
    return NOTIFIERS[action.kind](action)


def _action(ctx: WorkerContext, delivery: AlertDelivery) -> AlertAction | None:
    """The delivery's action as configured now, if it is still the one that fired (same rule,
    position and target): a rule edited since is not sent to a target it did not name."""
    rule = ctx.settings.alerts.rule(delivery.rule)
    if rule is None or delivery.action_index >= len(rule.actions):
        return None
    action = rule.actions[delivery.action_index]
    return action if redact.action_target(action) == delivery.target else None


class DeliverTask(RetryingTask):
    """``deliver_alert``'s retries (rdio_tasks.task_base); the delivery's attempt counter in the
    database bounds them (``alerts.max_attempts``)."""

    @property
    def retry_backoff_max(self) -> int:  # type: ignore[override]
        """The cap from the settings (read once, when the worker builds the task)."""
        return context().settings.alerts.retry_backoff_max_seconds


@app.task(name=TaskRef.DELIVER_ALERT.task_name, bind=True, base=DeliverTask)
def deliver_alert(self: DeliverTask, delivery_id: int) -> dict[str, Any]:
    """Send one attempt of ``delivery_id``; a retryable failure raises :class:`TransientError`
    and Celery schedules the next attempt."""
    ctx = context()
    cfg = ctx.settings.alerts
    got = outbox.claim(ctx.factory, delivery_id, cfg.timeout_seconds * 2 + 30, cfg.max_attempts)
    if got.outcome is not ClaimOutcome.CLAIMED:
        log.info("alert delivery %s: nothing to do (%s)", delivery_id, got.outcome)
        return {"delivery_id": delivery_id, "status": got.outcome}
    delivery, call = got.delivery, got.call
    assert delivery is not None
    action = _action(ctx, delivery)
    if call is None or action is None:
        reason = "call deleted" if call is None else "rule or action changed in the config since it fired"
        outbox.fail(ctx.factory, delivery, reason)
        log.warning("alert delivery %s failed: %s", delivery_id, reason)
        return {"delivery_id": delivery_id, "status": "failed", "error": reason}
    stored = StoredCall.model_validate(call)  # the shape documents are built from
    doc = document.build(ctx.settings, delivery, stored, _units(ctx, call), _transcript(ctx, delivery))
    try:
        result = notifier(action).send(doc, cfg.timeout_seconds)
    except Exception as exc:  # a bug in a notifier plugin: recorded, and retried like any failure
        log.exception("alert delivery %s: attempt raised", delivery_id)
        result = AttemptResult(False, 0.0, error=describe(exc))
    retry_in: float | None = None
    if not result.ok and result.retryable and delivery.attempts < cfg.max_attempts:
        # Celery picks the delay (full jitter) below this cap; the sweeper counts from it.
        retry_in = backoff_cap(self.request.retries or 0, self.retry_backoff_max)
    status = outbox.settle(ctx.factory, delivery, result, retry_in)
    log.info(
        "alert delivery %s (rule %r, call %s) attempt %s: %s%s",
        delivery_id,
        delivery.rule,
        call.id,
        delivery.attempts,
        "sent" if result.ok else result.error,
        "; retried" if retry_in is not None else "",
    )
    if retry_in is not None:
        raise TransientError(result.error or "attempt failed")
    return {"delivery_id": delivery_id, "status": status, "attempts": delivery.attempts}
