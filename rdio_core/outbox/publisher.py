"""Getting outbox rows to the broker: published after commit, swept when a publish was lost.

Every task that follows a committed row (a transcription job, a call's tone analysis, an alert
delivery) reaches the broker the same way. The row is committed first; its id is then handed to a
:class:`Publisher`'s thread (an upload never waits on Redis), and a sweeper thread re-publishes the
rows whose message was lost (the broker was down, a worker vanished). With the broker down a publish
fails in ~0.01 s; the thread then leaves new rows to the sweeper for :data:`BROKER_DOWN_SECONDS`
instead of paying the broker's connect timeout again for each, and the sweeper publishes them once
the broker answers. What is due differs per table and is given as a ``sweep`` function
(:mod:`rdio_core.pipeline`); the broker itself is injected (:class:`Broker`), so ``rdio_core``
imports neither Celery nor ``rdio_tasks``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from rdio_core.models import utcnow
from rdio_core.outbox.refs import Queue, TaskRef

log = logging.getLogger(__name__)

#: After a failed publish, how long the publisher thread leaves new rows to the sweeper.
BROKER_DOWN_SECONDS = 5.0
#: How long ``stop`` waits for both threads in all. A publish fails in ~0.01 s with the broker down
#: and a depth probe in < 0.1 s, so this only bounds the unexpected (SIGTERM took 10 s before).
STOP_TIMEOUT_SECONDS = 2.0


class QueueCounts(NamedTuple):
    """A queue's messages: ``waiting`` (deliverable to the next worker that asks) and ``reserved``
    (taken by a worker and not acknowledged yet)."""

    waiting: int
    reserved: int

    @property
    def total(self) -> int:
        return self.waiting + self.reserved


class Broker(Protocol):
    """What a publisher needs of the broker (``rdio_tasks.broker.CeleryBroker`` in practice)."""

    def send(self, ref: TaskRef, row_id: int, priority: int | None = None) -> str:
        """Publish ``ref`` for ``row_id``; the message's task id. Raises when the broker is away."""
        ...

    def counts(self, queue: Queue) -> QueueCounts | None:
        """The queue's messages, or None when the broker does not answer."""
        ...


@dataclass(frozen=True)
class Message:
    """One row to publish: its id (the task's only argument) and the broker priority (0 first)."""

    row_id: int
    priority: int | None = None


@dataclass
class Sweep:
    """What a sweep found due, and what it reports besides the count published."""

    messages: list[Message]
    report: dict[str, Any] = field(default_factory=dict)


class Publisher:
    """Publishes one task's messages after commit from a thread, and sweeps for lost ones.

    ``sweep`` gets the queue's counts and returns what to (re)publish; ``interval`` and ``wanted``
    are read at each pass (settings reload live); ``sent`` records a message the broker took (a job
    moves to ``queued``). The publishing thread starts with the first message if :meth:`start` was
    not called (a worker publishing the deliveries its task fired)."""

    def __init__(
        self,
        ref: TaskRef,
        broker: Broker,
        *,
        sweep: Callable[[QueueCounts], Sweep] | None = None,
        interval: Callable[[], float] = lambda: 5.0,
        wanted: Callable[[], bool] = lambda: True,
        sent: Callable[[Message, str], None] | None = None,
    ) -> None:
        self.ref = ref
        self.broker = broker
        self._sweep = sweep
        self._interval = interval
        self._wanted = wanted
        self._sent = sent
        self._queue: queue.Queue[list[Message] | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._publishing: threading.Thread | None = None
        self._sweeping: threading.Thread | None = None
        self._down_until = 0.0
        self.last_sweep: dict[str, Any] = {}

    @property
    def _name(self) -> str:
        return self.ref.name.lower().replace("_", "-")

    # -- threads ---------------------------------------------------------------------------------

    def start(self, sweeper: bool = True) -> Publisher:
        self._ensure_publishing()
        if sweeper and self._sweep is not None:
            self._sweeping = threading.Thread(
                target=self._sweep_loop, name=f"{self._name}-sweeper", daemon=True
            )
            self._sweeping.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for thread in (self._publishing, self._sweeping):  # daemons: one stuck dies with the process
            if thread is not None:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _ensure_publishing(self) -> None:
        with self._lock:
            if self._publishing is None or not self._publishing.is_alive():
                self._publishing = threading.Thread(
                    target=self._publish_loop, name=f"{self._name}-publisher", daemon=True
                )
                self._publishing.start()

    # -- publishing ------------------------------------------------------------------------------

    def publish_later(self, messages: list[Message]) -> None:
        """Hand messages of rows just committed to the publishing thread (best effort: the sweeper
        publishes any that do not get through)."""
        if messages and self._wanted():
            self._ensure_publishing()
            self._queue.put(list(messages))

    def publish(self, message: Message) -> bool:
        """Send one message now; False (the row left to the sweeper) when the broker is away."""
        return self.publish_all([message]) == 1

    def publish_all(self, messages: list[Message]) -> int:
        """Send each message now, in order; how many went out. Stops at the first broker failure
        (the rest would fail the same way) and starts the broker-down pause."""
        sent = 0
        for message in messages:
            try:
                task_id = self.broker.send(self.ref, message.row_id, message.priority)
            except Exception as exc:
                self._down_until = time.monotonic() + BROKER_DOWN_SECONDS
                log.warning(
                    "%s %s: broker unavailable (%s: %s); left for the sweeper",
                    self.ref.task_name,
                    [m.row_id for m in messages[sent:]],
                    type(exc).__name__,
                    exc,
                )
                break
            if self._sent is not None:
                self._sent(message, task_id)
            sent += 1
        return sent

    def _publish_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            while True:  # everything waiting goes in one pass
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                batch += more
            if time.monotonic() < self._down_until:
                continue  # the rows stay as they are; the sweeper publishes them when the broker is back
            try:
                self.publish_all(batch)
            except Exception:  # `sent` failed (the database away): the sweeper covers these rows
                log.exception("%s %s: publish failed; left for the sweeper", self.ref.task_name, batch)

    # -- sweeping --------------------------------------------------------------------------------

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self.sweep_once()
            except Exception:
                log.exception("%s sweep failed", self.ref.task_name)

    def sweep_once(self) -> dict[str, Any]:
        """Re-publish what the table says is due; what the pass did (also kept as ``last_sweep``)."""
        at = utcnow().isoformat()
        if self._sweep is None or not self._wanted():
            self.last_sweep = {"at": at, "published": 0, "enabled": False}
            return self.last_sweep
        counts = self.broker_counts()
        if counts is None:
            self.last_sweep = {"at": at, "broker": "down", "published": 0}
            return self.last_sweep
        due = self._sweep(counts)
        published = self.publish_all(due.messages) if due.messages else 0
        if published:
            log.info(
                "%s sweeper: republished %s", self.ref.task_name, [m.row_id for m in due.messages[:published]]
            )
        self.last_sweep = {"at": at, "broker": "ok", "published": published, **due.report}
        return self.last_sweep

    # -- the broker ------------------------------------------------------------------------------

    def broker_counts(self) -> QueueCounts | None:
        return self.broker.counts(self.ref.queue)

    def broker_probe(self) -> str:
        return "ok" if self.broker_counts() is not None else "unavailable"
