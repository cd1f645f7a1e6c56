"""Durable audio storage on a local (or shared) directory.

An upload's audio is streamed into ``root/.incoming/`` as it arrives (never held in memory: a 50 MB
part held per connection let ten stalled clients raise the API's RSS by 440 MB). Once the call is
accepted the file is fsynced, renamed into ``YYYY/MM/DD/<system>/<talkgroup>/`` (same filesystem,
so the rename is atomic) and the directory fsynced, so after the API answers 200 the audio survives
a crash or power cut. Names are made by the server: a client filename or path never reaches the
filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path, PurePosixPath

INCOMING = ".incoming"
TMP_SUFFIX = ".tmp"
# How long a statvfs answer stands for the free-space floor. At 800 uploads/s of ~60 KB the disk
# fills by ~12 MB in 0.25 s, far under any sensible storage.min_free_bytes (default 1 GB), and the
# bytes written since are subtracted anyway; one statvfs per upload was ~1% of the server's CPU.
FREE_SPACE_TTL = 0.25


class SpooledAudio:
    """An upload's audio part on its way to disk: written as it arrives, hashed on the way."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.moved = False  # renamed into the store: nothing left to remove
        self._hash = hashlib.sha256()
        self._file = open(path, "xb")  # noqa: SIM115 - closed in close()/discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        """Flush and fsync: after this the bytes are on disk (the rename makes them visible)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        if not self.moved:
            self.path.unlink(missing_ok=True)


class AudioStore:
    """Audio files under ``root/YYYY/MM/DD/<system>/<talkgroup>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.incoming_dir = self.root / INCOMING
        self.incoming_dir.mkdir(exist_ok=True)
        # Directories this process made (mkdir and realpath per upload were ~3% of ingest CPU);
        # a prune that removes one is caught by commit()'s retry.
        self._made: set[Path] = set()
        self._free: tuple[float, int] | None = None  # (monotonic time, bytes free) from statvfs
        self._written_since_free = 0

    def relative_path(self, when: datetime, system: int, talkgroup: int, extension: str) -> str:
        stamp = when.strftime("%Y%m%d_%H%M%S")
        name = f"{stamp}_{system}_{talkgroup}_{secrets.token_hex(6)}.{extension}"
        return str(PurePosixPath(when.strftime("%Y/%m/%d"), str(system), str(talkgroup), name))

    def absolute(self, relative: str) -> Path:
        """Resolve a stored relative path, refusing anything that escapes the root."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"audio path escapes the audio directory: {relative!r}")
        return path

    def spool(self) -> SpooledAudio:
        """A new temp file for an arriving audio part (removed by discard() or the orphan sweep)."""
        self.incoming_dir.mkdir(exist_ok=True)
        return SpooledAudio(self.incoming_dir / f"{secrets.token_hex(12)}{TMP_SUFFIX}")

    def commit(self, spooled: SpooledAudio, relative: str) -> Path:
        """fsync the spooled file, rename it to ``relative`` and fsync the directory."""
        spooled.close()
        final = self._made_path(relative)
        # A concurrent prune may remove a directory between mkdir and rename: try once more.
        for attempt in range(2):
            if attempt or final.parent not in self._made:
                final.parent.mkdir(parents=True, exist_ok=True)
                if len(self._made) > 10_000:  # one a (day, system, talkgroup): keep it small
                    self._made.clear()
                self._made.add(final.parent)
            try:
                os.replace(spooled.path, final)
                break
            except FileNotFoundError:
                self._made.discard(final.parent)
                if attempt or not spooled.path.exists():
                    raise
        spooled.moved = True
        self._written_since_free += spooled.size
        _fsync_dir(final.parent)
        return final

    def _made_path(self, relative: str) -> Path:
        """``relative`` under the root without resolving links: for paths this server made
        (:meth:`relative_path`), checked by their parts instead of by realpath."""
        parts = PurePosixPath(relative).parts
        if not parts or relative.startswith("/") or any(p in ("..", ".", "") for p in parts):
            raise ValueError(f"audio path escapes the audio directory: {relative!r}")
        return self.root.joinpath(*parts)

    def write(self, relative: str, data: bytes) -> Path:
        """Write ``data`` durably at ``relative`` (tests and tools; uploads use spool/commit)."""
        spooled = self.spool()
        try:
            spooled.write(data)
            return self.commit(spooled, relative)
        except BaseException:
            spooled.discard()
            raise

    def free_bytes(self) -> int:
        """Free space on the audio directory's filesystem, for an unprivileged writer (statvfs: ~µs)."""
        return shutil.disk_usage(self.root).free

    def _recent_free_bytes(self) -> int:
        """:meth:`free_bytes` at most :data:`FREE_SPACE_TTL` old, less what was stored since."""
        now = time.monotonic()
        if self._free is None or now - self._free[0] > FREE_SPACE_TTL:
            self._free = (now, self.free_bytes())
            self._written_since_free = 0
        return self._free[1] - self._written_since_free

    def low_space(self, min_free_bytes: int) -> str | None:
        """Why nothing should be written now (free space under ``min_free_bytes``), or None."""
        if min_free_bytes <= 0:
            return None
        free = self._recent_free_bytes()
        if free >= min_free_bytes:
            return None
        return f"{free} bytes free on the audio filesystem, below storage.min_free_bytes ({min_free_bytes})"

    def remove(self, relative: str) -> None:
        """Delete a stored file and the directories it leaves empty (up to the root)."""
        path = self.absolute(relative)
        path.unlink(missing_ok=True)
        self.prune_empty(path.parent)

    def prune_empty(self, directory: Path) -> int:
        """Remove ``directory`` and its parents while empty, never the root; return how many."""
        removed = 0
        directory = directory.resolve()
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                break
            removed += 1
            directory = directory.parent
        return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
