"""The one place rdio-api reaches into Hypercorn's internals: a stuck connection, and HTTP/2 limits.

Hypercorn hands request-body events to the app through a bounded queue (``max_app_queue_size``).
When the app answers early and returns (a bad key, a timeout, a size cap) while the client is still
sending, nobody reads that queue again; once it is full, Hypercorn's own clean-up puts an
``http.disconnect`` event into it and waits forever. The socket is never closed, the client that
writes its whole body before reading hangs, and the connection's buffered chunks stay in memory: a
client without a key could pile these up (found by the fuzz suite, issue 13).

``install()`` wraps ``TaskGroup.spawn_app`` so that once the app has sent its whole response, puts
into its queue return at once (the events are dropped: nobody will read them) and any put already waiting is
released. The fast path (queue not full) is a plain ``put_nowait``. The regression test is
``tests/test_upload_limits.py::test_early_answer_closes_so_a_client_writing_its_body_is_not_stuck``;
it fails if an upgrade changes ``spawn_app`` so that this no longer applies.

HTTP/2 (issue 24): Hypercorn acknowledges DATA (reopens the client's flow-control window) as soon
as it has queued it for the app, and closes nothing on abuse. ``RdioH2Protocol`` replaces its
``H2Protocol`` so that
- DATA is acknowledged when the app takes it from its queue (or when nobody will: the app has
  answered, the stream is gone), so what a connection can make the server hold unread is its
  connection window (64 KiB), not streams x queue x frames;
- a response the app marks ``Connection: close`` (a refused upload: no key, a budget spent, a
  timeout) ends the whole connection with GOAWAY, as it does on HTTP/1.1, instead of leaving the
  client free to open the next stream; data that arrives after the GOAWAY is read and dropped for
  a short grace so the client can read the answer before the socket closes;
- streams the client resets are counted per address, across its connections (a bucket of
  ``RESET_BURST`` refilled at ``RESET_RATE`` a second): past it the connection gets GOAWAY
  ENHANCE_YOUR_CALM and is closed, and the address's new connections too for ``PENALTY_SECONDS`` (CVE-2023-44487; nginx and Go bound the work a reset stream leaves
  behind). Counted per connection only, an attacker reconnected after each GOAWAY and kept legit
  uploads' p95 at 1.7 s on a 2-core machine (bench/stalled.py --h2 rapid-reset);
- SETTINGS, PING, WINDOW_UPDATE and PRIORITY frames are counted the same way (``CONTROL_BURST``,
  ``CONTROL_RATE``): a flood of them is work and owed ACKs, never a request;
- CONTINUATION frames are counted per connection and a header block may not outgrow the header
  list limit: h2 alone keeps 64 of them (up to 1 MiB) per block before it refuses (the 2024
  CONTINUATION floods).
``tests/test_h2_limits.py`` runs these on the real server and checks the internals they rely on.

Shutdown: Hypercorn closes every idle connection the moment it stops, and a connection accepted
just before then whose request has not arrived yet counts as idle. Its client had connected to a
live server and sends its upload into a closed socket: a refused call (1 of 70 in a
``systemctl restart`` test under load). ``install()`` gives such a connection, and only such a
connection (no request yet on it), ``FIRST_REQUEST_GRACE_SECONDS`` for its request to start, within
its header deadline (``keep_alive_timeout``); it is then served like any request in flight at
shutdown (``tests/test_restart.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h11
import hypercorn.protocol
from h2.frame_buffer import FrameBuffer
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.events import Body, Response, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hyperframe.frame import ContinuationFrame, Frame

from rdio_api.form import PreAuthBudget

_PATCHED = "_rdio_releases_finished_apps"

# Streams a client may reset in a burst, and how many more a second after that. A client that
# uploads calls never resets one (SDRTrunk, trunk-recorder); a browser resets a few on navigation.
RESET_BURST = 100
RESET_RATE = 10.0
# An address that empties its bucket is refused (GOAWAY before any frame is parsed) this long.
PENALTY_SECONDS = 5.0
# Frames that carry no request (SETTINGS, PING, WINDOW_UPDATE, PRIORITY) a client may send in a
# burst and then a second; a real client sends a few per request (CVE-2019-9512/9515-style floods).
CONTROL_BURST = 1000
CONTROL_RATE = 200.0
CONTROL_EVENTS = (
    h2.events.RemoteSettingsChanged,
    h2.events.PingReceived,
    h2.events.WindowUpdated,
    h2.events.PriorityUpdated,
)
# CONTINUATION frames one connection may send in its life: a header list within the limit fits a
# HEADERS frame or two (16 KiB frames, hpack-compressed), so 32 is already far past a real client.
MAX_CONTINUATIONS = 32
# After GOAWAY, how long the server keeps reading (and dropping) so the client can read the answer.
GOAWAY_GRACE_SECONDS = 1.0
# How long a connection accepted just before shutdown may take to start its request. A client sends
# it right after connecting (milliseconds); the wait ends as soon as it starts.
FIRST_REQUEST_GRACE_SECONDS = 2.0
CONNECTION_EXTENSION = "rdio.connection"
"""scope["extensions"] key: an id of the connection a request came on (per-connection budgets)."""


class _Buckets:
    """Token buckets per client address (an IPv6 /64 is one), used from the event loop only."""

    def __init__(self, burst: float, rate: float, keep: int = 10_000) -> None:
        self.burst = burst
        self.rate = rate
        self.keep = keep
        self.by_client: dict[str, tuple[float, float]] = {}  # tokens, when

    def spend(self, client: str) -> bool:
        """Take a token for ``client``; False when it has none left."""
        now = time.monotonic()
        tokens, at = self.by_client.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate) - 1
        if tokens < 0:  # emptied: the address waits PENALTY_SECONDS before it is parsed again
            tokens = -self.rate * PENALTY_SECONDS
        if len(self.by_client) >= self.keep and client not in self.by_client:
            # Forget addresses whose bucket has refilled: they cost nothing to start afresh.
            full = [c for c, (t, a) in self.by_client.items() if t + (now - a) * self.rate >= self.burst]
            for c in full:
                del self.by_client[c]
        self.by_client[client] = (tokens, now)
        return tokens >= 0

    def spent(self, client: str) -> bool:
        """Whether ``client`` has no token left now (nothing is taken)."""
        entry = self.by_client.get(client)
        if entry is None:
            return False
        tokens, at = entry
        return tokens + (time.monotonic() - at) * self.rate < 1


RESETS = _Buckets(RESET_BURST, RESET_RATE)


class _BoundedFrameBuffer(FrameBuffer):
    """h2's frame buffer with a per-connection CONTINUATION count and a header block byte cap."""

    def __init__(self, max_block_bytes: int) -> None:
        super().__init__(server=True)
        self.max_block_bytes = max_block_bytes
        self.continuations = 0
        self.block_bytes = 0

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        if isinstance(f, ContinuationFrame):
            self.continuations += 1
            self.block_bytes += len(f.data)
            if self.continuations > MAX_CONTINUATIONS or self.block_bytes > self.max_block_bytes:
                raise h2.exceptions.ProtocolError("Too many CONTINUATION frames.")
        elif f is not None:
            self.block_bytes = len(getattr(f, "data", b""))
        return super()._update_header_buffer(f)


class RdioH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol with flow control on consumption and abuse closing the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        old = self.connection.incoming_buffer
        buffer = _BoundedFrameBuffer(self.config.h2_max_header_list_size)
        buffer.max_frame_size = old.max_frame_size
        self.connection.incoming_buffer = buffer
        self.control_tokens = float(CONTROL_BURST)
        self.control_at = time.monotonic()
        self.client_id = PreAuthBudget.client_id(self.client[0] if self.client else None)
        self.close_after: dict[int, int] = {}  # stream id -> status of a Connection: close answer
        self.going_away = False
        self.flush_pending = False

    def consumed(self, stream_id: int, size: int) -> None:
        """The app took (or will never take) ``size`` bytes of ``stream_id``'s DATA: reopen the window."""
        if size <= 0 or self.closed or self.going_away:
            return
        try:
            self.connection.acknowledge_received_data(size, stream_id)
        except h2.exceptions.ProtocolError:
            return
        if not self.flush_pending:
            self.flush_pending = True
            self.task_group.spawn(self._deferred_flush)

    async def _deferred_flush(self) -> None:
        self.flush_pending = False
        if not self.closed:
            await self._flush()

    async def handle(self, event: Event) -> None:
        if self.going_away and isinstance(event, RawData):
            return  # read and dropped until the grace after GOAWAY ends
        if isinstance(event, RawData) and RESETS.spent(self.client_id):
            # An address that has spent its resets is not parsed at all until its bucket refills.
            await self.go_away(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            return
        await super().handle(event)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # A request the client resets in the same read (the rapid-reset pattern) is never started:
        # no task, no app call, only the count below.
        reset_now = {e.stream_id for e in events if isinstance(e, h2.events.StreamReset) and e.remote_reset}
        for event in events:
            if self.closed or self.going_away:
                return
            if isinstance(event, h2.events.RequestReceived) and event.stream_id in reset_now:
                continue
            if isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                padding = event.flow_controlled_length - len(event.data)
                if not isinstance(stream, HTTPStream) or stream.closed:
                    # Answered and gone (nobody will read it), or a WebSocket stream (its own buffering).
                    if stream is not None:
                        await stream.handle(Body(stream_id=event.stream_id, data=event.data))
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    continue
                if padding:
                    self.connection.acknowledge_received_data(padding, event.stream_id)
                # Acknowledged by the queue as the app reads it (install's spawn_app).
                await stream.handle(Body(stream_id=event.stream_id, data=event.data))
                continue
            if isinstance(event, CONTROL_EVENTS):
                now = time.monotonic()
                self.control_tokens = (
                    min(CONTROL_BURST, self.control_tokens + (now - self.control_at) * CONTROL_RATE) - 1
                )
                self.control_at = now
                if self.control_tokens < 0:
                    await self.go_away(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                    return
            if (
                isinstance(event, h2.events.StreamReset)
                and event.remote_reset
                and not RESETS.spend(self.client_id)
            ):
                await super()._handle_events([event])
                await self.go_away(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                return
            await super()._handle_events([event])
        await self._flush()

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response) and any(
            name.lower() == b"connection" and b"close" in value.lower() for name, value in event.headers
        ):
            self.close_after[event.stream_id] = event.status_code
        await super().stream_send(event)
        if isinstance(event, StreamClosed) and event.stream_id in self.close_after:
            status = self.close_after.pop(event.stream_id)
            code = (
                h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
                if status in (429, 503)
                else h2.errors.ErrorCodes.NO_ERROR
            )
            await self.go_away(code)

    async def go_away(self, code: h2.errors.ErrorCodes) -> None:
        """GOAWAY, then drop what arrives for a short grace and close the connection."""
        if self.closed or self.going_away:
            return
        self.going_away = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.connection.close_connection(error_code=code)
        await self._flush()
        self.task_group.spawn(self._close_after_grace)

    async def _close_after_grace(self) -> None:
        await asyncio.sleep(GOAWAY_GRACE_SECONDS)
        if not self.closed:
            await self.send(Closed())


def _protocol_of(send: Any) -> tuple[Any, int | None]:
    """The connection's protocol object and the stream id behind an HTTPStream's ``app_send``."""
    stream = getattr(send, "__self__", None)
    protocol = getattr(getattr(stream, "send", None), "__self__", None)
    return protocol, getattr(stream, "stream_id", None)


def _awaiting_first_request(server: TCPServer) -> bool:
    """An HTTP/1.1 connection whose first request has not arrived yet (h11 learns the client's
    HTTP version from its first request line)."""
    protocol = getattr(getattr(server, "protocol", None), "protocol", None)
    connection = getattr(protocol, "connection", None)
    return isinstance(connection, h11.Connection) and connection.their_http_version is None


_WRAPS = "_rdio_wraps"  # on the installed idle timeout: Hypercorn's own


def _install_first_request_grace() -> None:
    original = TCPServer._idle_timeout
    if hasattr(original, _WRAPS):
        return

    async def idle_timeout(self: TCPServer) -> None:
        if not _awaiting_first_request(self):
            await original(self)
            return
        deadline = time.monotonic() + self.config.keep_alive_timeout  # for the request's headers
        try:
            await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
        except TimeoutError:
            pass
        else:  # the server stops: this request is on its way. Its start cancels this task.
            await asyncio.sleep(min(FIRST_REQUEST_GRACE_SECONDS, max(0.0, deadline - time.monotonic())))
        await asyncio.shield(self._initiate_server_close())

    setattr(idle_timeout, _WRAPS, original)
    TCPServer._idle_timeout = idle_timeout  # type: ignore[method-assign]


def install() -> None:
    hypercorn.protocol.H2Protocol = RdioH2Protocol  # type: ignore[misc]
    _install_first_request_grace()
    original = TaskGroup.spawn_app
    if getattr(original, _PATCHED, False):
        return

    async def spawn_app(
        self: TaskGroup, app: Any, config: Any, scope: Any, send: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        finished = asyncio.Event()
        protocol, stream_id = _protocol_of(send)
        scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = id(protocol)

        def consumed(event: Any) -> None:
            if isinstance(protocol, RdioH2Protocol) and stream_id is not None and isinstance(event, dict):
                protocol.consumed(stream_id, len(event.get("body", b"")))

        async def send_and_note_the_end(message: Any) -> None:
            # The response's last body message ends the exchange: Hypercorn starts its clean-up
            # (and the blocking disconnect put) inside this very send, before the app returns.
            # None is Hypercorn's own signal that the app has returned.
            if message is None or (
                message.get("type") == "http.response.body" and not message.get("more_body", False)
            ):
                finished.set()
            if message is None:  # the app is gone: what it left unread will never be read
                while not queue.empty():
                    queue.get_nowait()
            await send(message)

        put = await original(self, app, config, scope, send_and_note_the_end)
        queue: asyncio.Queue[Any] = put.__self__  # type: ignore[attr-defined]
        # HTTP/2 flow control on consumption: asyncio.Queue.get/get_nowait take items via _get.
        take = queue._get

        def take_and_acknowledge() -> Any:
            event = take()
            consumed(event)
            return event

        queue._get = take_and_acknowledge  # type: ignore[method-assign]

        async def put_unless_finished(event: Any) -> None:
            if finished.is_set():
                consumed(event)  # dropped: nobody will read it
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
