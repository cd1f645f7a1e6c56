"""Run the app under Hypercorn: HTTP/1.1 and h2c on plain TCP, h2 via ALPN with TLS.

Hypercorn (not uvicorn) because SDRTrunk's JDK client sends ``Upgrade: h2c`` together with a
request body; Hypercorn answers such requests in HTTP/1.1 and still reads the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rdio_api import handoff, hypercorn_compat
from rdio_api.app import create_app
from rdio_core.settings import Settings

log = logging.getLogger(__name__)


def hypercorn_config(settings: Settings, host: str, port: int, fd: int | None = None) -> Config:
    config = Config()
    if fd is not None:  # the socket a parent holds across restarts (rdio_api.handoff)
        config.bind = [f"fd://{fd}"]
    else:
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = settings.server.graceful_timeout_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # Idle keep-alive and the deadline for a request's headers: Hypercorn times both from when the
    # connection goes idle. Body progress is bounded by the upload reader (body_timeout_seconds).
    config.keep_alive_timeout = settings.server.keep_alive_seconds
    # Body events (up to 64 KiB each) Hypercorn reads ahead of the app per request. The default 10
    # let 200 clients that pour in data and stall pin ~128 MB while the app catches up; 4 bounds
    # it at ~50 MB with no change to upload latency (bench/stalled.py).
    config.max_app_queue_size = 4
    # HTTP/2: see hypercorn_compat.RdioH2Protocol for flow control, resets and CONTINUATION frames.
    config.h2_max_concurrent_streams = settings.server.h2_max_concurrent_streams
    config.h2_max_header_list_size = settings.server.h2_max_header_list_size
    if settings.tls.cert and settings.tls.key:
        config.certfile = str(settings.tls.cert)
        config.keyfile = str(settings.tls.key)
        config.alpn_protocols = ["h2", "http/1.1"]
    return config


async def serve_forever(
    settings: Settings,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
    fd: int | None = None,
    ready_fd: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    config = hypercorn_config(settings, host, port, fd)
    scheme = "https" if config.ssl_enabled else "http"
    log.info("rdio-api listening on %s://%s:%s", scheme, host, port)
    hypercorn_compat.install()
    app = create_app(settings, on_ready=lambda: handoff.signal_ready(ready_fd))
    draining = asyncio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        if fd is not None:  # a successor serves the same socket: move kept-alive clients to it
            draining.set()
            await asyncio.sleep(settings.server.handoff_drain_seconds)
        # Open event streams would otherwise hold the graceful timeout: end them first.
        state = getattr(app.state, "rdio", None)
        if state is not None and state.events is not None:
            await state.events.close()

    await serve(_closing_while(draining, app), config, shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]


def _closing_while(draining: asyncio.Event, app: ASGIApp) -> ASGIApp:
    """The app, with ``Connection: close`` on every response once ``draining`` is set."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not draining.is_set():
            await app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing)

    return wrapped


def _bound_heap_retention() -> None:
    """Give 64 KiB receive buffers back to the OS when freed (glibc only; elsewhere a no-op).

    Request bodies arrive as ~64 KiB bytes objects, just under glibc's dynamic mmap threshold, so
    a burst leaves the heap at its high-water mark: after 200 stalled clients had sent 1 MB each the
    server kept +40-51 MB of RSS; with the threshold fixed at 64 KiB it kept +16 MB (bench/stalled.py).
    """
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if not libc_name or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 64 * 1024)


def run(settings: Settings, host: str, port: int, fd: int | None = None, ready_fd: int | None = None) -> None:
    _bound_heap_retention()
    main = serve_forever(settings, host, port, fd=fd, ready_fd=ready_fd)
    if os.environ.get("RDIO_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:  # optional: not on Windows
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
