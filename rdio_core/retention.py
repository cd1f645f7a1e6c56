"""Retention: delete audio past ``retention.audio_days`` and calls past ``retention.calls_days``.

Age is the call's own time (``date_time``, what the console and the API filter on). Work goes in
batches of 500 calls, one short transaction each, with a pause between them, so uploads (one
group-commit writer, and on SQLite one write lock) are never held up behind a large first pass:
a batch's DELETE holds the lock for milliseconds, the file removals happen outside any transaction.

- Audio: the file is removed first, then the row is marked ``audio_removed_at``. A crash between
  the two leaves an unmarked row whose file is gone; the next pass marks it (removal of a missing
  file is a no-op). The call keeps its row, transcript and search entry; its audio answers 410.
- Calls: the rows are deleted first and their files after the commit. Everything that hangs off a
  call goes with it through the database's own ``ON DELETE CASCADE`` (jobs, events, transmissions,
  alert deliveries and their attempts, backfill links; PostgreSQL's search rows) and, on SQLite,
  the ``call_search_delete`` trigger (FTS5 tables take no foreign key). A crash after the commit
  leaves files no row refers to, which the orphan sweep removes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from rdio_core.calls import CallFilter
from rdio_core.models import Call, utcnow
from rdio_core.settings import RetentionSettings
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)

BATCH = 500
#: Pause between batches: an upload waiting for the write lock gets it (a commit takes ~5 ms).
PAUSE_SECONDS = 0.05


@dataclass
class RetentionPass:
    audio_files: int = 0  # audio files deleted (their calls kept)
    calls: int = 0  # calls deleted with everything that hangs off them
    seconds: float = 0.0


def apply_retention(
    factory: sessionmaker[Session],
    store: AudioStore,
    retention: RetentionSettings,
    stop: threading.Event | None = None,
    now: datetime | None = None,
    batch: int = BATCH,
) -> RetentionPass:
    """One pass: everything past its age, in batches, until none is left or ``stop`` is set."""
    started = time.monotonic()
    now = now or utcnow()
    result = RetentionPass()
    if retention.calls_days is not None:
        result.calls = delete_old_calls(
            factory, store, now - timedelta(days=retention.calls_days), stop, batch
        )
    if retention.audio_days is not None:
        result.audio_files = remove_old_audio(
            factory, store, now - timedelta(days=retention.audio_days), stop, batch
        )
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _remove_file(store: AudioStore, relative: str) -> None:
    try:
        store.remove(relative)
    except ValueError:  # a path outside the audio directory (a hand-edited row): never touched
        log.warning("retention: not removing %r, outside the audio directory", relative)


def remove_old_audio(
    factory: sessionmaker[Session],
    store: AudioStore,
    cutoff: datetime,
    stop: threading.Event | None = None,
    batch: int = BATCH,
) -> int:
    """Delete the audio of calls older than ``cutoff``; the calls stay, marked ``audio_removed_at``."""
    removed = 0
    while not _stopped(stop):
        with factory() as session:
            rows = session.execute(
                CallFilter(until=cutoff, has_audio=True)
                .apply(select(Call.id, Call.audio_path))
                .order_by(Call.date_time)
                .limit(batch)
            ).all()
        if not rows:
            break
        for row in rows:
            _remove_file(store, row.audio_path)
        with factory() as session:
            session.execute(
                update(Call).where(Call.id.in_([r.id for r in rows])).values(audio_removed_at=utcnow())
            )
            session.commit()
        removed += len(rows)
        log.info("retention: removed the audio of %d calls older than %s", len(rows), cutoff)
        time.sleep(PAUSE_SECONDS)
    return removed


def delete_old_calls(
    factory: sessionmaker[Session],
    store: AudioStore,
    cutoff: datetime,
    stop: threading.Event | None = None,
    batch: int = BATCH,
) -> int:
    """Delete calls older than ``cutoff`` with their dependent rows, then their audio files."""
    deleted = 0
    while not _stopped(stop):
        with factory() as session:
            rows = session.execute(
                CallFilter(until=cutoff)
                .apply(select(Call.id, Call.audio_path, Call.audio_removed_at))
                .order_by(Call.date_time)
                .limit(batch)
            ).all()
            if not rows:
                break
            result = session.execute(delete(Call).where(Call.id.in_([r.id for r in rows])))
            assert isinstance(result, CursorResult)  # what a DELETE returns (typed as any Result)
            session.commit()
        for row in rows:
            if row.audio_removed_at is None:
                _remove_file(store, row.audio_path)
        deleted += result.rowcount
        log.info("retention: deleted %d calls older than %s", result.rowcount, cutoff)
        time.sleep(PAUSE_SECONDS)
    return deleted
