"""The watched folder (``ingest.watch_dirs``): calls from recorders that only write files.

Runs in the API process (``rdio-api serve``, and so ``rdio-api up``) as one thread that lists each
folder every ``ingest.poll_seconds``. A file is taken once, when complete (its ``.json`` sidecar is
there, or its size and time have held still for ``settle_seconds``), and goes through the same
pipeline as an import (rdio_api.importers.run) into the API's own call writer: a live call, with
its transcription job at the default priority, tone analysis and alerts like an upload. Then it is
moved aside, deleted or left, per the folder's ``after``. A file that cannot become a call goes to
``.failed/`` with its reason beside it; while the database refuses calls, files stay where they are
and are tried again (nothing is lost, nothing is moved that was not stored).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rdio_api.call_fields import CallData, from_rdio_fields
from rdio_api.importers.run import (
    DATABASE_ERROR,
    DUPLICATE,
    IMPORTED,
    Options,
    RowError,
    SourceCall,
    run_import,
)
from rdio_api.importers.trunk_recorder import SystemIds, call_from_sidecar
from rdio_api.state import AppState
from rdio_core.ingest_settings import WatchDir
from rdio_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    size: int
    mtime: float
    since: float  # monotonic time it was first seen with this size and mtime


def metadata_from_name(path: Path, wd: WatchDir) -> CallData:
    """The call a file's name describes (``pattern``), with the folder's system/talkgroup filling
    in; the file's modification time when the name holds no time."""
    groups: dict[str, str] = {}
    if wd.pattern:
        match = re.search(wd.pattern, path.stem)
        if match is None:
            raise RowError("name does not match pattern", f"{path.name} !~ {wd.pattern}")
        groups = {k: v for k, v in match.groupdict().items() if v}
    when = groups.get("timestamp")
    if when is None and "time" in groups:
        try:
            when = str(datetime.strptime(groups["time"], wd.time_format).replace(tzinfo=UTC).timestamp())
        except ValueError:
            raise RowError("unreadable time in name", f"{groups['time']!r} is not {wd.time_format}") from None
    if when is None:
        when = str(path.stat().st_mtime)
    fields = {
        "dateTime": when,
        "system": groups.get("system") or (str(wd.system) if wd.system else None),
        "talkgroup": groups.get("talkgroup") or (str(wd.talkgroup) if wd.talkgroup else None),
        "frequency": groups.get("frequency"),
        "source": groups.get("source"),
        "audioName": path.name,
    }
    return from_rdio_fields({k: v for k, v in fields.items() if v is not None})


class FolderWatcher:
    """One thread over every configured folder (settings are read per pass: reloads apply)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._seen: dict[Path, _Seen] = {}
        self._taken: dict[Path, tuple[int, float]] = {}  # `leave`: files done in this run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watch-dirs", daemon=True)

    def start(self) -> FolderWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def settings(self) -> Settings:
        return self.state.settings  # swapped by a config reload

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("watched folders: pass failed")
            self._stop.wait(self.settings().ingest.poll_seconds)

    def scan_once(self) -> dict[str, int]:
        """One pass over every folder; counts of what happened (for tests and logs)."""
        totals: dict[str, int] = {}
        for wd in self.settings().ingest.watched:
            for what, n in self._scan_dir(wd).items():
                totals[what] = totals.get(what, 0) + n
        return totals

    def _ready(self, wd: WatchDir) -> list[Path]:
        if not wd.path.is_dir():
            return []
        now, ready, present = time.monotonic(), [], set()
        for folder, dirs, files in os.walk(wd.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # .done, .failed
            for name in files:
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in wd.extensions:
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                present.add(path)
                if self._taken.get(path) == (st.st_size, st.st_mtime):
                    continue
                seen = self._seen.get(path)
                if seen is None or (seen.size, seen.mtime) != (st.st_size, st.st_mtime):
                    self._seen[path] = seen = _Seen(st.st_size, st.st_mtime, now)
                if path.with_suffix(".json").is_file() or (
                    st.st_size > 0 and now - seen.since >= wd.settle_seconds
                ):
                    ready.append(path)
        for known in (self._seen, self._taken):  # removed or renamed by someone else: forget it
            for gone in [p for p in known if p.is_relative_to(wd.path) and p not in present]:
                del known[gone]
        return sorted(ready)

    def _row(self, path: Path, wd: WatchDir) -> SourceCall:
        sidecar = path.with_suffix(".json")

        def make_call() -> CallData:
            if sidecar.is_file():
                return call_from_sidecar(sidecar, SystemIds(wd.system))
            return metadata_from_name(path, wd)

        return SourceCall(
            ref=str(path),
            make_call=make_call,
            audio=path,
            client_kind="trunk-recorder" if sidecar.is_file() else "watch",
        )

    def _scan_dir(self, wd: WatchDir) -> dict[str, int]:
        ready = self._ready(wd)
        if not ready:
            return {}
        settings = self.settings()
        options = Options(
            source=f"watch:{wd.path}",
            transcribe=True,
            alerts=True,
            priority=settings.transcription.default_priority,
        )
        state = self.state
        summary = run_import(
            settings,
            state.factory,
            state.writer,
            state.store,
            [self._row(p, wd) for p in ready],
            options,
            outcomes=True,
        )
        counts: dict[str, int] = {}
        assert summary.outcomes is not None
        for path in ready:
            what = summary.outcomes.get(str(path), "unexpected error")
            if what.startswith(DATABASE_ERROR):
                counts["retry"] = counts.get("retry", 0) + 1
                continue  # left in place: the next pass tries again
            self._seen.pop(path, None)
            if what in (IMPORTED, DUPLICATE):
                counts[what] = counts.get(what, 0) + 1
                self._finish(path, wd, wd.done if wd.after == "move" else None)
            else:
                counts["failed"] = counts.get("failed", 0) + 1
                log.warning("watched file %s not taken: %s", path, what)
                self._finish(path, wd, wd.failed, reason=what)
        if counts:
            log.info("watched folder %s: %s", wd.path, counts)
        return counts

    def _finish(self, path: Path, wd: WatchDir, to: Path | None, reason: str | None = None) -> None:
        """Move (with its sidecar) under ``to``, keeping its place below the folder; delete; or
        remember it (``leave``)."""
        sidecar = path.with_suffix(".json")
        try:
            if wd.after == "leave":
                st = path.stat()
                self._taken[path] = (st.st_size, st.st_mtime)
                return
            if to is None:  # delete
                path.unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                return
            target = to / path.relative_to(wd.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            for src in (path, sidecar):
                if src.exists():
                    shutil.move(src, target.with_suffix(src.suffix))
            if reason is not None:
                target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
        except OSError as exc:
            log.error("watched file %s: could not %s it: %s", path, wd.after, exc)


def install(state: AppState) -> Callable[[], None] | None:
    """The API's start-up hook. The watcher runs even with no folder configured (a pass over none
    costs nothing), so folders added by a config reload are watched without a restart."""
    watcher = FolderWatcher(state).start()
    if state.settings.ingest.watched:
        log.info("watching %s", ", ".join(str(wd.path) for wd in state.settings.ingest.watched))
    return watcher.stop
