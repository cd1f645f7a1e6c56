"""Remove what a crash leaves in the audio directory: files no call refers to, temp files, empty dirs.

An upload's file is renamed into place before its row commits (so a 200 always has its audio), and
an upload in progress spools into ``.incoming/``. A SIGKILL between the two, or mid-spool, leaves a
file that nothing will ever read: after one SIGKILL during a burst, 752 complete files and 9 temp
files had no row and stayed after restart (issue 13). Only files older than a grace period are
touched, so an upload still in flight is never raced.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from rdio_core.models import Call
from rdio_core.storage import INCOMING, TMP_SUFFIX, AudioStore

log = logging.getLogger(__name__)

BATCH = 500  # paths per "which of these have a row" query


@dataclass
class OrphanSweep:
    audio_files: int = 0  # complete files with no call row
    temp_files: int = 0  # stale spools and interrupted writes
    directories: int = 0  # empty directories
    scanned: int = 0
    seconds: float = 0.0


def sweep_orphans(store: AudioStore, factory: sessionmaker[Session], grace_seconds: float) -> OrphanSweep:
    """One pass over ``store.root``; returns what was removed."""
    started = time.monotonic()
    cutoff = time.time() - grace_seconds
    result = OrphanSweep()
    pending: list[tuple[str, Path]] = []
    for dirpath, _dirnames, filenames in os.walk(store.root):
        directory = Path(dirpath)
        for name in filenames:
            path = directory / name
            try:
                if path.lstat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            result.scanned += 1
            if name.endswith(TMP_SUFFIX) or directory.name == INCOMING:
                path.unlink(missing_ok=True)
                result.temp_files += 1
                continue
            pending.append((path.relative_to(store.root).as_posix(), path))
            if len(pending) >= BATCH:
                result.audio_files += _remove_unreferenced(factory, pending)
                pending = []
    if pending:
        result.audio_files += _remove_unreferenced(factory, pending)
    result.directories = _remove_empty_dirs(store)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def sweep_temp_files(store: AudioStore, grace_seconds: float) -> int:
    """Only the spool directory's stale temp files: what a worker runs at start, where the audio
    directory is its own (audio fetched from the API, see rdio_tasks.audio_fetch) and holds no calls."""
    cutoff = time.time() - grace_seconds
    removed = 0
    for entry in os.scandir(store.incoming_dir):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _remove_unreferenced(factory: sessionmaker[Session], batch: list[tuple[str, Path]]) -> int:
    with factory() as session:
        known = set(
            session.execute(
                select(Call.audio_path).where(Call.audio_path.in_([r for r, _ in batch]))
            ).scalars()
        )
    removed = 0
    for relative, path in batch:
        if relative not in known:
            path.unlink(missing_ok=True)
            removed += 1
            log.info("orphan sweep: removed %s (no call refers to it)", relative)
    return removed


def _remove_empty_dirs(store: AudioStore) -> int:
    """Empty directories below the root, deepest first (never the root or the spool directory)."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(store.root, topdown=False):
        directory = Path(dirpath)
        if filenames or directory == store.root or directory == store.incoming_dir:
            continue
        if any((directory / d).exists() for d in dirnames):
            continue
        try:
            directory.rmdir()
            removed += 1
        except OSError:  # gained an entry meanwhile
            pass
    return removed
