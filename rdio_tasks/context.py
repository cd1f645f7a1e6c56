"""Per-process worker context: settings, database, audio store, built lazily after fork."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import db
from rdio_core.settings import Settings, load_settings
from rdio_core.storage import AudioStore


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: AudioStore
    pid: int


@cache
def _build(pid: int) -> WorkerContext:
    settings = load_settings()
    engine = db.make_engine(settings.resolved_database_url, pool_size=2)
    return WorkerContext(
        settings, engine, db.make_session_factory(engine), AudioStore(settings.resolved_audio_dir), pid
    )


def context() -> WorkerContext:
    """The context of this process (a forked child never reuses its parent's connections)."""
    return _build(os.getpid())
