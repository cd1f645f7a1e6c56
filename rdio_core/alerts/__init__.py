"""Alerts: rules over calls (``settings``, ``rules``) and an outbox of deliveries (``models``,
``outbox``). The Celery task that sends them is ``rdio_tasks.alerts_task.deliver_alert`` (queue
``alerts``); they reach the broker through :mod:`rdio_core.pipeline`'s deliveries publisher.

Callers write deliveries in their own transaction and publish them after it commits::

    ids = fire_alerts(session, settings, call, "transcript", text)
    session.commit()
    pipeline.deliveries.publish_later(deliveries(ids))
"""

from rdio_core.alerts.outbox import fire_alerts, has_rules
from rdio_core.alerts.settings import Stage

__all__ = ["Stage", "fire_alerts", "has_rules"]
