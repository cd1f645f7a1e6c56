"""The event hub that wakes /api/events streams: woken by a change, bounded by its timeout, and
a stream whose client leaves (its task cancelled) leaves the others and the hub working."""

from __future__ import annotations

import asyncio

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from rdio_api.live import EventHub


def test_streams_wake_on_a_change_time_out_and_survive_cancelled_neighbours() -> None:
    log = {"latest": 0}  # the event log's newest id, as the hub's poller reads it

    async def scenario() -> None:
        hub = EventHub(sessionmaker(create_engine("sqlite://")))
        hub.latest_id = lambda: log["latest"]  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await hub.wait_past(hub.latest, 0.05) is False  # nothing new: the timeout ends it
        assert loop.time() - started < 1

        waiters = [asyncio.create_task(hub.wait_past(0, 30)) for _ in range(40)]
        await asyncio.sleep(0.01)
        log["latest"] = 1  # a new event: the poller sees it and wakes the streams
        for task in waiters[::2]:  # clients that leave as the change arrives
            task.cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        # A leaving client's stream ends cancelled, or with the change if it had already woken:
        # never with an error of the hub's own.
        assert all(r is True or isinstance(r, asyncio.CancelledError) for r in results[::2])
        assert results[1::2] == [True] * 20

        again = asyncio.create_task(hub.wait_past(1, 30))
        await asyncio.sleep(0.01)
        await hub.close()
        assert await asyncio.wait_for(again, 5) is False  # shutdown ends a stream at once

    asyncio.run(scenario())
