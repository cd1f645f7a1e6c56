"""A lock whose waiters get it most urgent first: a live call's turn at a serialised model.

The pyannote VAD and the wav2vec2 aligner are not thread-safe, so every call in a worker process
takes its turn at them. With a plain lock the turn is a race among the waiters: during a backfill
the worker's other threads are all backfill calls, so a live dispatch call waited behind most of
them (about 90 ms of VAD each with tiny.en on 2 cores). Here waiters queue by the job's priority
(1 most urgent .. 5), then by arrival, as the cross-call batcher orders their windows
(rdio_tasks/batcher.py). A holder is never interrupted: an urgent waiter waits for at most the one
turn under way.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PriorityLock"]


class PriorityLock:
    """Mutual exclusion with the waiters served by (priority, arrival): ``with lock.hold(priority):``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._queue: list[tuple[int, int]] = []  # (priority, ticket) of the waiters
        self._tickets = itertools.count()

    @contextmanager
    def hold(self, priority: int = 3) -> Iterator[None]:
        """Hold the lock for the ``with`` block, after every waiter that is more urgent or came
        earlier at the same priority."""
        with self._cond:
            turn = (priority, next(self._tickets))
            heapq.heappush(self._queue, turn)
            try:
                while self._held or self._queue[0] != turn:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue, wake the next
                self._queue.remove(turn)
                heapq.heapify(self._queue)
                self._cond.notify_all()
                raise
            heapq.heappop(self._queue)
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Threads queued for the lock (not counting its holder)."""
        with self._cond:
            return len(self._queue)
