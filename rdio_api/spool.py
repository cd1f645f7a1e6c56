"""The upload spool: calls accepted while the database is away, committed once it answers.

SDRTrunk never retries a refused upload, so a database restart used to cost every call that arrived
meanwhile (a PostgreSQL stopped for 15 s: 303 of 800 uploads answered 503). Now an upload whose
commit fails as "unavailable", or does not come back within ``spool.wait_seconds`` (SQLite locked by
another process), is written here and answered 200:

- its audio is already fsynced and renamed into the audio store (rdio_api.routes.upload._store);
- its fields go to ``data_dir/spool/<arrival>-<key>.json``: written to a temp name, fsynced, renamed,
  directory fsynced, all before the 200.

While anything is spooled, new uploads are spooled too, so calls reach the database in arrival
order. One drain thread per process (a file lock makes it one per spool directory, so an old and
a new server during a restart never drain together) hands the records, oldest first, to the same
CallWriter every upload uses: jobs, events, search, units and alerts follow as for any call. Each
upload carries an idempotency key into its row (``calls.ingest_key``, unique): a record whose key
is already stored (a crash between commit and unlink, or a commit that came back after its upload
had been spooled) is removed, never inserted twice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from rdio_api import metrics
from rdio_api.call_fields import CallData
from rdio_api.ingest import CallWriter, CommitError, IngestItem, IngestResult, StoredAudio
from rdio_core.settings import SpoolSettings
from rdio_core.storage import AudioStore

if TYPE_CHECKING:
    from rdio_api.state import AppState

log = logging.getLogger(__name__)

SUFFIX = ".json"
TMP = ".part"
FAILED = "failed"  # records the database refused as rows (not as unavailable), kept for an operator
DRAIN_BATCH = 64


def new_key() -> str:
    """An upload's idempotency key (32 hex characters)."""
    return secrets.token_hex(16)


def _encode(item: IngestItem) -> dict[str, Any]:
    return {
        "key": item.ingest_key,
        "received_at": item.received_at.isoformat() if item.received_at else None,
        "call": item.call.model_dump(mode="json"),
        "audio": dataclasses.asdict(item.audio),
        "client_kind": item.client_kind,
        "key_name": item.key_name,
        "remote_addr": item.remote_addr,
    }


def _decode(data: dict[str, Any]) -> IngestItem:
    received = data.get("received_at")
    return IngestItem(
        call=CallData.model_validate(data["call"]),
        audio=StoredAudio(**data["audio"]),
        client_kind=data["client_kind"],
        key_name=data["key_name"],
        remote_addr=data["remote_addr"],
        ingest_key=data["key"],
        received_at=datetime.fromisoformat(received) if received else None,
        from_spool=True,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclasses.dataclass
class Entry:
    name: str
    audio_bytes: int
    arrived: float  # unix time


class Spool:
    """The spool directory and an in-memory index of what it holds (name -> size, arrival)."""

    def __init__(self, directory: Path, limits: SpoolSettings) -> None:
        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._writing: set[str] = set()  # indexed, not yet renamed into place
        self._bytes = 0
        self._seq = 0
        self.wake = threading.Event()  # set when a record is added: the drain looks at once
        self.rescan()

    # -- what it holds -------------------------------------------------------------------------

    def rescan(self) -> None:
        """Read the directory: records another process (or a killed one) left are drained too."""
        found: dict[str, Entry] = {}
        for entry in os.scandir(self.directory):
            if not entry.is_file():
                continue
            if entry.name.endswith(TMP):  # a write cut by a crash: its upload was never answered
                with contextlib.suppress(OSError):
                    if time.time() - entry.stat().st_mtime > 60:
                        os.unlink(entry.path)
                continue
            if not entry.name.endswith(SUFFIX):
                continue
            known = self._entries.get(entry.name)
            if known is not None:
                found[entry.name] = known
                continue
            try:
                data = json.loads(Path(entry.path).read_bytes())
                size = int(data["audio"]["size"])
            except (OSError, ValueError, KeyError, TypeError):
                size = 0
            found[entry.name] = Entry(entry.name, size, _arrival(entry.name))
        with self._lock:
            for name in self._writing:
                found[name] = self._entries[name]
            self._entries = found
            self._bytes = sum(e.audio_bytes for e in found.values())

    def pending(self) -> int:
        return len(self._entries)

    def pending_bytes(self) -> int:
        return self._bytes

    def oldest_age(self) -> float | None:
        """Seconds the oldest spooled call has waited, or None when nothing is spooled."""
        with self._lock:
            if not self._entries:
                return None
            oldest = min(e.arrived for e in self._entries.values())
        return max(0.0, time.time() - oldest)

    def full(self, extra_bytes: int = 0) -> str | None:
        """Why one more call does not fit, or None."""
        if len(self._entries) >= self.limits.max_calls:
            return f"{len(self._entries)} calls spooled (spool.max_calls {self.limits.max_calls})"
        if self._bytes + extra_bytes > self.limits.max_bytes:
            return f"{self._bytes} bytes spooled (spool.max_bytes {self.limits.max_bytes})"
        return None

    def audio_paths(self) -> set[str]:
        """Audio files spooled calls own (they have no row yet: not orphans)."""
        paths: set[str] = set()
        for name in list(self._entries):
            with contextlib.suppress(OSError, ValueError, KeyError):
                paths.add(json.loads((self.directory / name).read_bytes())["audio"]["relative_path"])
        return paths

    def describe(self) -> str:
        age = self.oldest_age()
        if age is None:
            return "empty"
        return f"{self.pending()} calls spooled ({self._bytes} bytes), oldest {age:.0f} s"

    # -- writing and removing ------------------------------------------------------------------

    def add(self, item: IngestItem) -> bool:
        """Write the call durably (fsync, rename, fsync dir); False when the spool is full."""
        with self._lock:
            if self.full(item.audio.size) is not None:
                return False
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:08d}-{item.ingest_key}{SUFFIX}"
            # Held until indexed: a second upload cannot take the same room.
            self._entries[name] = Entry(name, item.audio.size, time.time())
            self._bytes += item.audio.size
            self._writing.add(name)
        try:
            tmp = self.directory / (name + TMP)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, json.dumps(_encode(item)).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / name)
            _fsync_dir(self.directory)
        except OSError:
            with self._lock:
                self._writing.discard(name)
            self._forget(name)
            with contextlib.suppress(OSError):
                (self.directory / (name + TMP)).unlink()
            raise
        with self._lock:
            self._writing.discard(name)
        metrics.SPOOLED.inc()
        self.wake.set()
        return True

    def oldest(self, limit: int) -> list[str]:
        """The first ``limit`` records in arrival order, stopping before one still being written
        (the drain must not overtake it)."""
        with self._lock:
            names = sorted(self._entries)[:limit]
            for i, name in enumerate(names):
                if name in self._writing:
                    return names[:i]
            return names

    def load(self, name: str) -> IngestItem:
        return _decode(json.loads((self.directory / name).read_bytes()))

    def remove(self, name: str) -> None:
        (self.directory / name).unlink(missing_ok=True)
        self._forget(name)

    def set_aside(self, name: str) -> None:
        """A record the database refuses as a row: out of the queue, kept in ``failed/``."""
        failed = self.directory / FAILED
        failed.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.directory / name, failed / name)
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            entry = self._entries.pop(name, None)
            if entry is not None:
                self._bytes -= entry.audio_bytes


def _arrival(name: str) -> float:
    try:
        return int(name.split("-", 1)[0]) / 1e9
    except ValueError:
        return time.time()


class Drain:
    """Commit spooled calls through the CallWriter, oldest first, while the database answers."""

    def __init__(
        self,
        spool: Spool,
        writer: CallWriter,
        store: AudioStore,
        probe: Callable[[], None],
        settings: Callable[[], SpoolSettings],
    ) -> None:
        self.spool = spool
        self.writer = writer
        self.store = store
        self.probe = probe  # raises while the database does not answer
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-drain", daemon=True)
        self._lock_fd: int | None = None
        self.drained = 0
        self.last_drain_seconds: float | None = None  # first spooled -> spool empty, last outage

    def start(self) -> Drain:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.spool.wake.set()
        self._thread.join(timeout=30)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _hold_lock(self) -> bool:
        """One drain per spool directory: during a restart the old and new server overlap."""
        if self._lock_fd is None:
            self._lock_fd = os.open(self.spool.directory / ".drain.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.spool.wake.clear()
            if not self.spool.pending():
                self.spool.wake.wait(5.0)
                if not self._stop.is_set():
                    self.spool.rescan()  # records left by another process
                continue
            if not self._hold_lock():
                self._stop.wait(self.settings().retry_seconds)
                self.spool.rescan()
                continue
            try:
                self.drain_once()
            except Exception as exc:  # the database is still away: ask again shortly
                log.info("spool: %d calls waiting, database not answering (%s)", self.spool.pending(), exc)
                self._stop.wait(self.settings().retry_seconds)
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def drain_once(self) -> int:
        """Commit everything spooled, batch by batch, until empty; raises when the database fails."""
        started = time.monotonic()
        oldest = self.spool.oldest_age() or 0.0
        self.spool.rescan()
        committed = 0
        while not self._stop.is_set():
            names = self.spool.oldest(DRAIN_BATCH)
            if not names:
                if not self.spool.pending():
                    break
                time.sleep(0.005)  # the next record is being written
                continue
            self.probe()
            committed += self._commit(names)
        if committed:
            self.drained += committed
            self.last_drain_seconds = time.monotonic() - started
            metrics.SPOOL_DRAIN_SECONDS.set(self.last_drain_seconds)
            log.warning(
                "spool: %d calls committed in %.2f s (the oldest had waited %.1f s before)",
                committed,
                self.last_drain_seconds,
                oldest,
            )
        return committed

    def _commit(self, names: list[str]) -> int:
        items: list[tuple[str, IngestItem]] = []
        for name in names:
            try:
                items.append((name, self.spool.load(name)))
            except FileNotFoundError:  # drained by another process meanwhile
                self.spool.remove(name)
            except (OSError, ValueError, KeyError, TypeError):
                log.exception("spool: record %s unreadable; set aside in %s/", name, FAILED)
                self.spool.set_aside(name)
        futures = [(name, item, self.writer.submit_nowait(item)) for name, item in items]
        done = 0
        for name, item, fut in futures:
            try:
                result: IngestResult = fut.result()
            except CommitError as exc:
                if exc.unavailable:
                    raise
                log.error("spool: the database refused call %s as a row; set aside", name)
                self.spool.set_aside(name)
                continue
            except concurrent.futures.CancelledError:
                raise CommitError("writer stopped") from None
            if result.duplicate and not result.already_stored:
                # A duplicate of another call (dedup window): its audio goes, as at upload.
                with contextlib.suppress(OSError, ValueError):
                    self.store.remove(item.audio.relative_path)
            self.spool.remove(name)
            metrics.SPOOL_DRAINED.inc()
            done += 1
        return done


def install(state: AppState, directory: Path) -> Callable[[], None]:
    """Open the spool, start its drain (records a killed process left are drained at once) and
    export its gauges; returns the cleanup the lifespan runs at shutdown."""
    box = Spool(directory, state.settings.spool)

    def probe() -> None:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    state.spool = box
    state.drain = Drain(box, state.writer, state.store, probe, lambda: state.settings.spool).start()
    metrics.SPOOL_CALLS.set_function(box.pending)
    metrics.SPOOL_BYTES.set_function(box.pending_bytes)
    metrics.SPOOL_OLDEST_SECONDS.set_function(lambda: box.oldest_age() or 0.0)
    if box.pending():
        log.warning("spool: %s left by the last run; committing them", box.describe())

    def cleanup() -> None:
        assert state.drain is not None
        state.drain.stop()

    return cleanup
