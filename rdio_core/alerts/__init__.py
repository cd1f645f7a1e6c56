"""Alerts: rules over calls (``settings``, ``rules``), an outbox of deliveries (``models``,
``outbox``) and their publishing (``publish``). The Celery task that sends them is
``rdio_tasks.alerts_task.deliver_alert`` (queue ``alerts``).

Callers write deliveries in their own transaction and publish them after it commits::

    ids = fire_alerts(session, settings, call, "transcript", text)
    session.commit()
    publish_deliveries(ids)
"""

from rdio_core.alerts.outbox import fire_alerts, has_rules
from rdio_core.alerts.publish import publish_deliveries
from rdio_core.alerts.settings import Stage

__all__ = ["Stage", "fire_alerts", "has_rules", "publish_deliveries"]
