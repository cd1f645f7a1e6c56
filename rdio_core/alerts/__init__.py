"""Alerts: rules over calls (``settings``, ``rules``) and an outbox of deliveries (``models``,
``outbox``). The Celery task that sends them is ``rdio_tasks.alerts_task.deliver_alert`` (queue
``alerts``); they reach the broker through :mod:`rdio_core.pipeline`'s deliveries publisher.

Callers write deliveries in their own transaction and publish them after it commits::

    ids = fire_alerts(session, settings, call, "transcript", text)
    session.commit()
    pipeline.deliveries.publish_later(deliveries(ids))

Nothing is imported here: ``rdio_core.settings`` reads ``alerts.settings``, and every ``rdio-api``
command (the ``serve`` parent that holds the socket among them) loads settings; pulling the outbox,
and with it SQLAlchemy and the models, into that import cost each one about 0.25 s of CPU.
"""
