"""Wakes ``/api/events`` streams when the events log grows, with one query per process.

Any process may append to the log (the API's call writer, every worker finishing a job, on any
machine), so the API cannot learn of new rows from inside itself. One task per API process polls
``max(events.id)`` every ``POLL_SECONDS`` while at least one stream is open and wakes them all; each
stream then reads its own rows (filtered by its key). Ten open consoles cost one indexed query per
poll, not ten, and a stream waits at most one poll for news.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from rdio_core.models import Event

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class EventHub:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.latest = 0
        self.closing = asyncio.Event()
        # Set and replaced on each change. Not an asyncio.Condition: on Python 3.11 a stream whose
        # client left while wait_for(Condition.wait_for(...)) re-acquired the lock raised "cannot
        # wait on un-acquired lock" (an unhandled-error traceback in the server log, seen in CI).
        self._changed = asyncio.Event()
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None

    def latest_id(self) -> int:
        with self.factory() as session:
            return session.execute(select(func.max(Event.id))).scalar_one() or 0

    async def wait_past(self, seen: int, timeout: float) -> bool:
        """Wait until the log holds an id above ``seen``; False on timeout or shutdown."""
        self._listeners += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="events-poll")
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while not (self.latest > seen or self.closing.is_set()):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
            return self.latest > seen and not self.closing.is_set()
        finally:
            self._listeners -= 1

    async def _poll(self) -> None:
        while self._listeners > 0 and not self.closing.is_set():
            try:
                latest = await run_in_threadpool(self.latest_id)
            except Exception as exc:  # database briefly away: streams keep their place
                log.warning("events poll failed: %s", exc)
                latest = self.latest
            if latest != self.latest:
                self.latest = latest
                self._notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), POLL_SECONDS)

    async def close(self) -> None:
        """Server shutdown: end every stream now instead of holding the graceful timeout."""
        self.closing.set()
        self._notify()

    def _notify(self) -> None:
        """Wake every waiting stream; later waits use a fresh event."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
