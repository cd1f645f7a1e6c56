"""The broker as the outbox publishers see it (:class:`rdio_core.outbox.Broker`), over a Celery app.

``rdio_core`` never imports Celery or this package: whoever starts a process (the API's runtime,
``rdio-api sweep``, the importer, a worker) builds a :class:`CeleryBroker` and hands it to
:class:`rdio_core.pipeline.Pipeline`.
"""

from __future__ import annotations

import logging

from celery import Celery

from rdio_core.outbox import Queue, QueueCounts, TaskRef
from rdio_tasks import broker_compat
from rdio_tasks.broker_compat import BrokerCompatError
from rdio_tasks.celery_app import NO_BROKER

log = logging.getLogger(__name__)


class CeleryBroker:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, ref: TaskRef, row_id: int, priority: int | None = None) -> str:
        if not self.app.conf.broker_url:  # never a guessed broker (rdio_tasks.celery_app)
            raise RuntimeError(NO_BROKER)
        result = self.app.send_task(ref.task_name, args=[row_id], queue=ref.queue.value, priority=priority)
        return str(result.id)

    def counts(self, queue: Queue) -> QueueCounts | None:
        """The queue's messages waiting and reserved, or None when the broker does not answer."""
        try:
            with self.app.connection_for_read() as conn:
                # One immediate retry: kombu's default 2 s pause made /ready, /metrics and
                # shutdown each wait 2 s whenever the broker was down.
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
                return broker_compat.queue_counts(conn.default_channel, queue.value)
        except BrokerCompatError as exc:  # an upgrade moved a kombu internal: say which
            log.error("%s queue depth unknown: %s", queue, exc)
            return None
        except Exception as exc:
            log.debug("%s queue depth unavailable: %s", queue, exc)
            return None


def connect(broker_url: str) -> CeleryBroker:
    """A broker bound to ``broker_url`` through a Celery app of its own: the shared ``rdio_tasks``
    app keeps the connections of whatever broker it last used in this process (a test's stopped
    Redis answered every later publish with "connection refused"), and publishing needs only the
    task names and queues, which celeryconfig holds."""
    app = Celery("rdio-publish", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker_url)
    return CeleryBroker(app)
