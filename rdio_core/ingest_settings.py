"""``ingest:`` settings: folders the API watches for recorders that only write files
(rdio_api.importers.watch)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rdio_core.bounds import Id

#: Names a filename pattern may capture; anything else in it is a configuration mistake.
PATTERN_GROUPS = frozenset({"system", "talkgroup", "timestamp", "time", "frequency", "source"})
#: trunk-recorder's own file name: ``<talkgroup>-<start epoch>_<frequency>[.0][-call_<n>]``.
TRUNK_RECORDER_NAME = r"(?P<talkgroup>\d+)-(?P<timestamp>\d+)_(?P<frequency>\d+)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchDir(_Strict):
    """One watched folder. A file is taken once it is complete: when its ``.json`` sidecar is
    there (trunk-recorder writes it after the audio), or when its size and modification time have
    not changed for ``settle_seconds``. Its metadata comes from the sidecar, else from ``pattern``
    matched against the file name, with ``system`` / ``talkgroup`` filling what neither gives."""

    path: Path
    enabled: bool = True
    system: Id | None = None
    talkgroup: Id | None = None
    # A Python regular expression searched in the file name (without extension), with named groups
    # among PATTERN_GROUPS; ``time`` is read with ``time_format``, ``timestamp`` is epoch seconds.
    # Without either the file's modification time is the call's time.
    pattern: str | None = TRUNK_RECORDER_NAME
    time_format: str = "%Y%m%d_%H%M%S"
    extensions: list[str] = Field(default_factory=lambda: [".mp3", ".m4a", ".wav", ".opus", ".ogg", ".flac"])
    # What becomes of a file once stored (or found already stored): moved under done_dir
    # (default <path>/.done), deleted, or left where it is (taken once per server run; a restart
    # re-reads it and finds it stored). Files that cannot become calls go to <path>/.failed with a
    # .reason.txt beside them (left alone with `leave`).
    after: Literal["move", "delete", "leave"] = "move"
    done_dir: Path | None = None
    settle_seconds: float = Field(default=2.0, ge=0)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        unknown = set(compiled.groupindex) - PATTERN_GROUPS
        if unknown:
            raise ValueError(f"unknown groups {sorted(unknown)}; use {sorted(PATTERN_GROUPS)}")
        return value

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else f".{e.lower()}" for e in value]

    @property
    def done(self) -> Path:
        return self.done_dir if self.done_dir is not None else self.path / ".done"

    @property
    def failed(self) -> Path:
        return self.path / ".failed"


class IngestSettings(_Strict):
    watch_dirs: list[WatchDir] = Field(default_factory=list)
    # How often each folder is listed. Polling works on network shares where inotify sees nothing.
    poll_seconds: float = Field(default=1.0, gt=0)

    @property
    def watched(self) -> list[WatchDir]:
        return [wd for wd in self.watch_dirs if wd.enabled]
