"""Durable audio storage on a local (or shared) directory.

A file is written to a temporary name in its final directory, fsynced, renamed into place and the
directory fsynced, so after the API answers 200 the audio survives a crash or power cut. Names are
made by the server: a client filename or path never reaches the filesystem.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path, PurePosixPath


class AudioStore:
    """Audio files under ``root/YYYY/MM/DD/<system>/<talkgroup>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()

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

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self._known_dirs.add(directory)

    def write(self, relative: str, data: bytes) -> Path:
        """Write ``data`` durably at ``relative`` and return the absolute path."""
        final = self.absolute(relative)
        directory = final.parent
        self._ensure_dir(directory)
        tmp = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, final)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def remove(self, relative: str) -> None:
        self.absolute(relative).unlink(missing_ok=True)
