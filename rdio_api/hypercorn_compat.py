"""The one place rdio-api reaches into Hypercorn's internals: a fix for a stuck connection.

Hypercorn hands request-body events to the app through a bounded queue (``max_app_queue_size``).
When the app answers early and returns (a bad key, a timeout, a size cap) while the client is still
sending, nobody reads that queue again; once it is full, Hypercorn's own clean-up puts an
``http.disconnect`` event into it and waits forever. The socket is never closed, the client that
writes its whole body before reading hangs, and the connection's buffered chunks stay in memory: a
client without a key could pile these up (found by the fuzz suite, issue 13).

``install()`` wraps ``TaskGroup.spawn_app`` so that once the app has sent its whole response, puts
into its queue return at once (the events are dropped: nobody will read them) and any put already waiting is
released. The fast path (queue not full) is a plain ``put_nowait``. The regression test is
``tests/test_upload_hardening.py::test_early_answer_closes_so_a_client_writing_its_body_is_not_stuck``;
it fails if an upgrade changes ``spawn_app`` so that this no longer applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio.task_group import TaskGroup

_PATCHED = "_rdio_releases_finished_apps"


def install() -> None:
    original = TaskGroup.spawn_app
    if getattr(original, _PATCHED, False):
        return

    async def spawn_app(
        self: TaskGroup, app: Any, config: Any, scope: Any, send: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        finished = asyncio.Event()

        async def send_and_note_the_end(message: Any) -> None:
            # The response's last body message ends the exchange: Hypercorn starts its clean-up
            # (and the blocking disconnect put) inside this very send, before the app returns.
            # None is Hypercorn's own signal that the app has returned.
            if message is None or (
                message.get("type") == "http.response.body" and not message.get("more_body", False)
            ):
                finished.set()
            await send(message)

        put = await original(self, app, config, scope, send_and_note_the_end)
        queue: asyncio.Queue[Any] = put.__self__  # type: ignore[attr-defined]

        async def put_unless_finished(event: Any) -> None:
            if finished.is_set():
                return
            try:
                queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                pass
            putting = asyncio.ensure_future(queue.put(event))
            ending = asyncio.ensure_future(finished.wait())
            try:
                await asyncio.wait({putting, ending}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (putting, ending):
                    if not task.done():
                        task.cancel()

        return put_unless_finished

    setattr(spawn_app, _PATCHED, True)
    TaskGroup.spawn_app = spawn_app  # type: ignore[method-assign]
