"""Getting deliveries to the broker: published after commit from a background thread, and swept
when a publish was lost.

An upload never waits on Redis: :func:`publish_deliveries` only hands ids to a thread. With the
broker down the publish fails in ~0.01 s, the thread skips publishing for a few seconds, and the
rows stay ``pending``; :func:`sweep_once` (run by the API every ``alerts.sweep_interval_seconds``
and by ``rdio-api sweep``) publishes them when the broker is back. Celery is imported only here,
and only when something is published: ``rdio_core`` stays importable without it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from rdio_core.alerts import outbox
from rdio_core.models import utcnow

if TYPE_CHECKING:
    from celery import Celery

    from rdio_core.settings import Settings

log = logging.getLogger(__name__)

TASK = "rdio_tasks.deliver_alert"
QUEUE = "alerts"
#: After a failed publish, how long the publisher thread leaves new deliveries to the sweeper
#: instead of paying the broker's connect timeout again for each.
BROKER_DOWN_SECONDS = 5.0


def _celery() -> Celery:
    from rdio_tasks.celery_app import app

    return app


def send(ids: list[int], app: Celery | None = None) -> int:
    """Publish each delivery to the ``alerts`` queue now; how many went out. Stops at the first
    broker failure (the rest would fail the same way) and logs it: the sweeper retries."""
    app = app or _celery()
    if not app.conf.broker_url:
        log.warning("alerts: no broker_url, deliveries %s wait for a sweeper with one", ids)
        return 0
    sent = 0
    for delivery_id in ids:
        try:
            app.send_task(TASK, args=[delivery_id], queue=QUEUE)
        except Exception as exc:
            log.warning(
                "alert deliveries %s: broker unavailable (%s: %s); left for the sweeper",
                ids[sent:],
                type(exc).__name__,
                exc,
            )
            raise BrokerDown from exc
        sent += 1
    return sent


class BrokerDown(Exception):
    """A publish failed; the deliveries stay pending for the sweeper."""


class _Publisher:
    def __init__(self) -> None:
        self._queue: queue.Queue[list[int]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._down_until = 0.0

    def put(self, ids: list[int]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="alert-publisher", daemon=True)
                self._thread.start()
        self._queue.put(ids)

    def _run(self) -> None:
        while True:
            ids = self._queue.get()
            while True:  # everything waiting goes in one pass
                try:
                    ids = ids + self._queue.get_nowait()
                except queue.Empty:
                    break
            if time.monotonic() < self._down_until:
                continue
            try:
                send(ids)
            except BrokerDown:
                self._down_until = time.monotonic() + BROKER_DOWN_SECONDS
            except Exception:
                log.exception("alert deliveries %s: publish failed; left for the sweeper", ids)


_publisher = _Publisher()


def publish_deliveries(ids: list[int]) -> None:
    """Hand the deliveries just committed to the broker, in the background (best effort: a
    sweeper publishes any that do not get through)."""
    if ids:
        _publisher.put(list(ids))


def waiting_messages(app: Celery) -> int | None:
    """Messages waiting in the ``alerts`` queue (every priority list), None if the broker is down."""
    from rdio_tasks import broker_compat

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            channel: Any = conn.default_channel
            names = broker_compat.priority_queue_names(channel, QUEUE)
            return int(sum(channel.client.llen(name) for name in names))
    except broker_compat.BrokerCompatError as exc:
        log.error("alerts queue depth unknown: %s", exc)
        return None
    except Exception as exc:
        log.debug("alerts queue depth unavailable: %s", exc)
        return None


def sweep_once(
    factory: sessionmaker[Session], settings: Settings, app: Celery | None = None
) -> dict[str, Any]:
    """Republish deliveries whose message was lost or whose worker vanished (see
    :func:`rdio_core.alerts.outbox.sweep_candidates`)."""
    app = app or _celery()
    waiting = waiting_messages(app)
    if waiting is None:
        return {"broker": "down", "published": 0}
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.alerts.stale_after_seconds)
    with factory() as session:
        ids = outbox.sweep_candidates(session, now, stale_before, waiting)
        session.commit()
    published = 0
    if ids:
        with contextlib.suppress(BrokerDown):
            published = send(ids, app)
        log.info("alert sweeper: republished deliveries %s", ids[:published])
    return {"broker": "ok", "published": published, "waiting": waiting}


class Sweeper:
    """The API's background sweeper thread for deliveries."""

    def __init__(self, factory: sessionmaker[Session], settings: Callable[[], Settings]) -> None:
        self.factory = factory
        self.settings = settings  # read at each pass: a config reload applies to the next
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-sweeper", daemon=True)
        self.last: dict[str, Any] = {}

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.settings().alerts.sweep_interval_seconds):
            try:
                self.last = sweep_once(self.factory, self.settings())
            except Exception:
                log.exception("alert sweep failed")
