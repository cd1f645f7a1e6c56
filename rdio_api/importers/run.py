"""One import run: source rows in, calls stored through the live path's writer, a summary out.

Every importer yields :class:`SourceCall` rows; this module does the rest the same way for all of
them. Per batch of :data:`BATCH` rows it reads each row's audio (identified and measured as an
upload's is), asks the database which rows it already holds (the writer's duplicate rule: same
system and talkgroup, start within the window, same audio or same radio), copies the rest into
storage (fsync + rename, or a hard link), and hands them to :class:`rdio_api.ingest.CallWriter`,
which de-duplicates again against whatever the live path stored meanwhile, inserts, and writes the
units, search entries and events an upload gets. So a rerun adds nothing (resumable), a call
SDRTrunk also uploaded live is not stored twice, and an interrupted run leaves no half-written call:
a file whose row did not commit is removed (a crash between the two leaves an orphan file that the
orphan sweep removes, as for uploads).

A bad row never stops the run: it is counted under its reason and the first :data:`SHOWN_FAILURES`
are printed with the row they came from.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from rdio_api.call_fields import CallData, IncompleteCall
from rdio_api.importers.arguments import BATCH
from rdio_api.ingest import (
    CallWriter,
    CommitError,
    IngestItem,
    IngestResult,
    StoredAudio,
    existing_duplicates,
)
from rdio_core.audio_probe import NotAudioError, probe
from rdio_core.settings import Settings
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)

#: Threads that read, hash and fsync audio: fsync releases the GIL, so a few overlap their waits.
#: 4, 8 and 16 measured the same on this 2-core machine (714, 674, 707 calls/s, 3k rows, noisy).
IO_THREADS = 4
SHOWN_FAILURES = 50
IMPORTED, DUPLICATE = "imported", "duplicate"
DATABASE_ERROR = "database refused the call"  # not the row's fault: the watched folder retries it


class RowError(Exception):
    """A row that cannot become a call; ``reason`` is the short key it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


AudioSource = bytes | Path


@dataclass
class SourceCall:
    """One call as a source holds it, mapped onto the upload's call shape."""

    ref: str  # where it came from, for reports: "radio_calls id 12", a file path
    make_call: Callable[[], CallData]  # raises IncompleteCall / RowError for a bad row
    audio: AudioSource | None
    client_kind: str
    key_name: str | None = None
    remote_addr: str | None = None


@dataclass
class Options:
    source: str  # "sdrtrunk-rdio-api", "rdio-scanner", "trunk-recorder"
    dry_run: bool = False
    transcribe: bool = False  # queue transcription at transcription.backfill_priority
    alerts: bool = False
    link: bool = False  # hard-link file audio instead of copying it
    batch: int = BATCH
    # Job priority; None: transcription.backfill_priority (an archive waits behind live calls). The
    # watched folder's calls are live ones and pass transcription.default_priority.
    priority: int | None = None


@dataclass
class Summary:
    source: str
    dry_run: bool
    seen: int = 0
    imported: int = 0
    duplicates: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # Per row ref: "imported", "duplicate" or why it failed (the watched folder files each away).
    outcomes: dict[str, str] | None = None

    def outcome(self, ref: str, what: str) -> None:
        if self.outcomes is not None:
            self.outcomes[ref] = what

    @property
    def rate(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    def fail(self, ref: str, error: RowError) -> None:
        self.outcome(ref, str(error))
        self.failed[error.reason] += 1
        if len(self.examples) < SHOWN_FAILURES:
            self.examples.append((ref, str(error)))
        log.debug("%s: %s", ref, error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "rows": self.seen,
            "would_import" if self.dry_run else "imported": self.imported,
            "duplicates": self.duplicates,
            "failed": sum(self.failed.values()),
            "failed_by_reason": dict(self.failed.most_common()),
            "seconds": round(self.seconds, 2),
            "calls_per_second": round(self.rate, 1),
        }


@dataclass
class _Prepared:
    row: SourceCall
    item: IngestItem
    data: bytes
    extension: str


Progress = Callable[[int], None]  # rows done so far


def run_import(
    settings: Settings,
    factory: sessionmaker[Session],
    writer: CallWriter | None,
    store: AudioStore,
    rows: Iterable[SourceCall],
    options: Options,
    progress: Progress | None = None,
    *,
    outcomes: bool = False,
) -> Summary:
    """Import ``rows``; ``writer`` may be None only for a dry run."""
    summary = Summary(options.source, options.dry_run, outcomes={} if outcomes else None)
    started = time.monotonic()
    pending: list[tuple[list[_Prepared], list[concurrent.futures.Future[IngestResult]]]] = []
    dry_seen: dict[str, list[tuple[int, int, datetime]]] = {}  # sha256 -> calls a dry run would store
    with concurrent.futures.ThreadPoolExecutor(IO_THREADS, thread_name_prefix="import-io") as pool:
        try:
            for batch in _batches(rows, options.batch):
                summary.seen += len(batch)
                prepared = _prepare(pool, batch, options, settings, summary)
                fresh = _not_stored(factory, settings, prepared, summary)
                if options.dry_run:
                    _count_dry(fresh, dry_seen, settings, summary)
                elif fresh:
                    assert writer is not None
                    stored = _store_all(pool, store, fresh, options, summary)
                    pending.append((stored, [writer.submit_nowait(p.item) for p in stored]))
                # One batch commits while the next is read: wait for the one before.
                while len(pending) > 1:
                    _settle(store, *pending.pop(0), summary)
                if progress is not None:
                    progress(summary.seen)
        finally:
            while pending:
                _settle(store, *pending.pop(0), summary)
    summary.seconds = time.monotonic() - started
    return summary


def _count_dry(
    fresh: list[_Prepared],
    seen: dict[str, list[tuple[int, int, datetime]]],
    settings: Settings,
    summary: Summary,
) -> None:
    """A dry run writes nothing, so the writer never sees a row that repeats an earlier one of the
    same run: count those here by the same rule (same audio, system and talkgroup, within the window)."""
    window = timedelta(seconds=max(settings.upload.dedup_window_seconds, 1.0))
    for p in fresh:
        c, sha = p.item.call, p.item.audio.sha256
        earlier = seen.setdefault(sha, [])
        if any(
            s == c.system and t == c.talkgroup and abs(when - c.date_time) <= window for s, t, when in earlier
        ):
            summary.duplicates += 1
            summary.outcome(p.row.ref, DUPLICATE)
        else:
            earlier.append((c.system, c.talkgroup, c.date_time))
            summary.imported += 1


def _batches(rows: Iterable[SourceCall], size: int) -> Iterator[list[SourceCall]]:
    batch: list[SourceCall] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prepare(
    pool: concurrent.futures.Executor,
    batch: list[SourceCall],
    options: Options,
    settings: Settings,
    summary: Summary,
) -> list[_Prepared]:
    def one(row: SourceCall) -> _Prepared | RowError:
        try:
            return _prepare_one(row, options, settings)
        except RowError as exc:
            return exc
        except IncompleteCall as exc:
            return RowError(exc.message.removeprefix("Incomplete call data: "))
        except Exception as exc:  # a bug on one row must not end the run
            log.exception("%s: unexpected error", row.ref)
            return RowError("unexpected error", repr(exc))

    out: list[_Prepared] = []
    for row, result in zip(batch, pool.map(one, batch), strict=True):
        if isinstance(result, RowError):
            summary.fail(row.ref, result)
        else:
            out.append(result)
    return out


def _prepare_one(row: SourceCall, options: Options, settings: Settings) -> _Prepared:
    call = row.make_call()
    data = _read_audio(row.audio)
    try:
        info = probe(data)
    except NotAudioError as exc:
        raise RowError("not audio", str(exc)) from None
    audio = StoredAudio(
        relative_path="",  # set when stored
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mime=info.mime,
        duration_seconds=info.duration_seconds,
    )
    origin: dict[str, Any] = {"source": options.source, "ref": row.ref}
    if not options.alerts:
        origin["alerts"] = False
    priority = options.priority if options.priority is not None else settings.transcription.backfill_priority
    item = IngestItem(
        call=call,
        audio=audio,
        client_kind=row.client_kind,
        key_name=row.key_name,
        remote_addr=row.remote_addr,
        transcribe=options.transcribe,
        job_priority=priority,
        alerts=options.alerts,
        origin=origin,
    )
    return _Prepared(row, item, data, info.extension)


def _read_audio(audio: AudioSource | None) -> bytes:
    if audio is None:
        raise RowError("no audio", "the row holds no audio and names no file")
    if isinstance(audio, bytes):
        if not audio:
            raise RowError("no audio", "empty audio")
        return audio
    try:
        data = audio.read_bytes()
    except FileNotFoundError:
        raise RowError("audio file missing", str(audio)) from None
    except OSError as exc:
        raise RowError("audio file unreadable", f"{audio}: {exc.strerror}") from None
    if not data:
        raise RowError("no audio", f"empty file {audio}")
    return data


def _not_stored(
    factory: sessionmaker[Session], settings: Settings, prepared: list[_Prepared], summary: Summary
) -> list[_Prepared]:
    if not prepared:
        return []
    with factory() as session:
        found = existing_duplicates(session, [p.item for p in prepared], settings.upload.dedup_window_seconds)
    fresh = []
    for p, match in zip(prepared, found, strict=True):
        if match is None:
            fresh.append(p)
        else:
            summary.duplicates += 1
            summary.outcome(p.row.ref, DUPLICATE)
    return fresh


def _store_all(
    pool: concurrent.futures.Executor,
    store: AudioStore,
    fresh: list[_Prepared],
    options: Options,
    summary: Summary,
) -> list[_Prepared]:
    def one(p: _Prepared) -> _Prepared | RowError:
        c = p.item.call
        relative = store.relative_path(c.date_time, c.system, c.talkgroup, p.extension)
        try:
            if options.link and isinstance(p.row.audio, Path):
                _link(store, p.row.audio, relative)
            else:
                store.write(relative, p.data)
        except OSError as exc:
            return RowError("audio not stored", f"{relative}: {exc.strerror or exc}")
        p.item.audio.relative_path = relative
        return p

    out: list[_Prepared] = []
    for p, result in zip(fresh, pool.map(one, fresh), strict=True):
        if isinstance(result, RowError):
            summary.fail(p.row.ref, result)
        else:
            out.append(result)
    return out


def _link(store: AudioStore, source: Path, relative: str) -> None:
    """Hard-link ``source`` at ``relative`` (same filesystem), else copy it. The data is already on
    disk; the new directory entry is made durable by fsyncing its directory."""
    final = store.absolute(relative)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, final)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        store.write(relative, source.read_bytes())
        return
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _settle(
    store: AudioStore,
    stored: list[_Prepared],
    futures: list[concurrent.futures.Future[IngestResult]],
    summary: Summary,
) -> None:
    for p, fut in zip(stored, futures, strict=True):
        try:
            result = fut.result()
        except CommitError as exc:
            store.remove(p.item.audio.relative_path)
            summary.fail(p.row.ref, RowError(DATABASE_ERROR, str(exc)))
            continue
        if result.duplicate:  # stored meanwhile by the live path or an earlier row of this run
            store.remove(p.item.audio.relative_path)
            summary.duplicates += 1
            summary.outcome(p.row.ref, DUPLICATE)
        else:
            summary.imported += 1
            summary.outcome(p.row.ref, IMPORTED)
