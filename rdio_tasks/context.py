"""Per-process worker context: settings, database, audio store, publishers, built lazily after fork."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cache, cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import db
from rdio_core.pipeline import Pipeline
from rdio_core.settings import Settings, config_path, load_settings
from rdio_core.settings_reload import reload_settings
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: AudioStore
    pid: int
    config_mtime: int | None = None

    @cached_property
    def pipeline(self) -> Pipeline:
        """The publishers of what this worker's tasks commit (alert deliveries), through the
        worker's own Celery app; built on first use, after any fork."""
        from rdio_tasks.broker import CeleryBroker
        from rdio_tasks.celery_app import app

        return Pipeline(CeleryBroker(app), self.factory, lambda: self.settings)


@cache
def _build(pid: int) -> WorkerContext:
    settings = load_settings()
    engine = db.make_engine(settings.resolved_database_url, pool_size=2)
    return WorkerContext(
        settings, engine, db.make_session_factory(engine), AudioStore(settings.resolved_audio_dir), pid
    )


def context() -> WorkerContext:
    """The context of this process (a forked child never reuses its parent's connections).

    The config file is re-read when it changes, so per-talkgroup settings apply to the next call
    without restarting workers. The rule is the API's (:func:`rdio_core.settings_reload.reload_settings`):
    a file that no longer validates is ignored with a log line, and keys that need a restart
    (``database_url``, ``broker_url``, the directories, the worker's pool and limits) keep their
    running value with a warning: the database engine and audio store here were built from them.
    """
    ctx = _build(os.getpid())
    path = config_path()
    if path is not None:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return ctx
        if ctx.config_mtime is None:
            ctx.config_mtime = mtime
        elif mtime != ctx.config_mtime:
            ctx.config_mtime = mtime
            new = reload_settings(path, ctx.settings)
            if new is not None:
                ctx.settings = new
                log.info("worker %s: config reloaded", os.getpid())
    return ctx
