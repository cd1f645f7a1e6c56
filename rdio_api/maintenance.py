"""Background housekeeping in the API process, at start and then periodically: the orphan sweep,
the events log's retention and calls/audio retention (rdio_core.retention, in batches).

Runs in a daemon thread so start-up and uploads never wait on a directory walk (a walk of the audio
tree plus one indexed query per 500 old files).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from prometheus_client import Counter
from sqlalchemy import CursorResult, delete
from sqlalchemy.orm import Session, sessionmaker

from rdio_api.state import AppState
from rdio_core.models import Event, utcnow
from rdio_core.orphans import OrphanSweep, sweep_orphans
from rdio_core.retention import apply_retention
from rdio_core.settings import Settings
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)

ORPHANS_REMOVED = Counter(
    "rdio_orphans_removed_total", "Leftovers removed from the audio directory by the orphan sweep", ["kind"]
)
RETENTION_REMOVED = Counter(
    "rdio_retention_removed_total", "Audio files and calls deleted by retention (past their age)", ["kind"]
)


def run_retention(
    settings: Settings, factory: sessionmaker[Session], store: AudioStore, stop: threading.Event | None = None
) -> None:
    """One retention pass, logged and counted (also run by ``rdio-api sweep``)."""
    retention = settings.retention
    if retention.audio_days is None and retention.calls_days is None:
        return
    try:
        done = apply_retention(factory, store, retention, stop)
    except Exception:
        log.exception("retention pass failed; trying again next interval")
        return
    RETENTION_REMOVED.labels(kind="audio").inc(done.audio_files)
    RETENTION_REMOVED.labels(kind="call").inc(done.calls)
    log.log(
        logging.INFO if done.audio_files or done.calls else logging.DEBUG,
        "retention: removed the audio of %d calls and deleted %d calls in %.2fs",
        done.audio_files,
        done.calls,
        done.seconds,
    )


def prune_events(factory: sessionmaker[Session], keep_hours: float) -> int:
    """Delete events older than ``keep_hours`` (a client can resume no further back than that)."""
    cutoff = utcnow() - timedelta(hours=keep_hours)
    with factory() as session:
        result = session.execute(delete(Event).where(Event.created_at < cutoff))
        assert isinstance(result, CursorResult)  # what a DELETE returns (typed as any Result)
        deleted = result.rowcount
        session.commit()
    return deleted


def install(state: AppState) -> Callable[[], None]:
    stop = threading.Event()

    def loop() -> None:
        while True:
            storage = state.settings.storage
            swept: OrphanSweep | None = None
            try:
                if state.spool is not None and state.spool.pending():
                    # Spooled calls' audio has no row yet but is no orphan: sweep next interval.
                    log.info("orphan sweep postponed: %s", state.spool.describe())
                else:
                    swept = sweep_orphans(state.store, state.factory, storage.orphan_grace_seconds)
            except Exception:
                log.exception("orphan sweep failed; trying again next interval")
            if swept is not None:
                ORPHANS_REMOVED.labels(kind="audio").inc(swept.audio_files)
                ORPHANS_REMOVED.labels(kind="temp").inc(swept.temp_files)
                ORPHANS_REMOVED.labels(kind="directory").inc(swept.directories)
                removed = swept.audio_files + swept.temp_files + swept.directories
                log.log(
                    logging.INFO if removed else logging.DEBUG,
                    "orphan sweep: removed %d audio files with no call, %d temp files, %d empty "
                    "directories (%d old files checked in %.2fs)",
                    swept.audio_files,
                    swept.temp_files,
                    swept.directories,
                    swept.scanned,
                    swept.seconds,
                )
            try:
                pruned = prune_events(state.factory, state.settings.api.events_keep_hours)
            except Exception:
                log.exception("events pruning failed; trying again next interval")
            else:
                log.log(
                    logging.INFO if pruned else logging.DEBUG, "events log: deleted %d old events", pruned
                )
            run_retention(state.settings, state.factory, state.store, stop)
            if stop.wait(storage.orphan_sweep_interval_seconds):
                return

    thread = threading.Thread(target=loop, name="orphan-sweep", daemon=True)
    thread.start()

    def cleanup() -> None:
        stop.set()
        thread.join(timeout=5)

    return cleanup
