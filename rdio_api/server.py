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

from hypercorn.asyncio import serve
from hypercorn.config import Config

from rdio_api.app import create_app
from rdio_core.settings import Settings

log = logging.getLogger(__name__)


def hypercorn_config(settings: Settings, host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = settings.server.graceful_timeout_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75  # SDRTrunk reuses connections between calls
    if settings.tls.cert and settings.tls.key:
        config.certfile = str(settings.tls.cert)
        config.keyfile = str(settings.tls.key)
        config.alpn_protocols = ["h2", "http/1.1"]
    return config


async def serve_forever(settings: Settings, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    config = hypercorn_config(settings, host, port)
    scheme = "https" if config.ssl_enabled else "http"
    log.info("rdio-api listening on %s://%s:%s", scheme, host, port)
    await serve(create_app(settings), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def run(settings: Settings, host: str, port: int) -> None:
    if os.environ.get("RDIO_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:  # optional: not on Windows
            uvloop = None
        if uvloop is not None:
            uvloop.run(serve_forever(settings, host, port))
            return
    asyncio.run(serve_forever(settings, host, port))
