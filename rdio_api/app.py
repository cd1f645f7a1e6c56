"""FastAPI application factory: builds shared state in the lifespan and mounts thin routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from rdio_api import transcription_hook
from rdio_api.ingest import CallWriter
from rdio_api.routes import calls, health, transcription, upload
from rdio_api.state import AppState
from rdio_core import db
from rdio_core.settings import Settings, config_path
from rdio_core.settings_reload import SettingsWatcher
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)

# Extension points used by the transcription side: each gets the AppState once it is built and
# returns a cleanup callable (or None).
StartupHook = Callable[[AppState], Callable[[], None] | None]
_startup_hooks: list[StartupHook] = []


def add_startup_hook(hook: StartupHook) -> None:
    _startup_hooks.append(hook)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.make_engine(settings.resolved_database_url)
        db.upgrade(engine)
        factory = db.make_session_factory(engine)
        state = AppState(
            settings=settings,
            engine=engine,
            factory=factory,
            store=AudioStore(settings.resolved_audio_dir),
            writer=CallWriter(factory, settings),
        )
        app.state.rdio = state
        hooks = [transcription_hook.install, *_startup_hooks]
        cleanups = [c for c in (hook(state) for hook in hooks) if c is not None]
        watcher = SettingsWatcher(config_path(), settings, state.apply_settings).start()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, watcher.trigger)
        cleanups.insert(0, watcher.stop)
        # Move the import-time heap (FastAPI, SQLAlchemy, pydantic: ~10^5 objects) out of the cyclic
        # GC's generations. Without this each full collection stalls every in-flight upload; measured
        # A-B-A-B at concurrency 32 it cut p99 from ~90 ms to ~55-70 ms.
        gc.collect()
        gc.freeze()
        log.info("rdio-api ready: database %s, audio in %s", engine.url.render_as_string(), state.store.root)
        try:
            yield
        finally:
            for cleanup in reversed(cleanups):
                cleanup()
            state.writer.close()
            engine.dispose()

    app = FastAPI(
        title="rdio-api",
        version="0.1.0",
        description="Rdio Scanner-compatible call ingest with WhisperX transcription.",
        lifespan=lifespan,
    )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> PlainTextResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return PlainTextResponse("Internal server error.", status_code=500)

    app.include_router(upload.router)
    app.include_router(calls.router)
    app.include_router(transcription.router)
    app.include_router(health.router)
    return app
