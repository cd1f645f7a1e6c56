"""Pick up config file edits without a restart (on SIGHUP, or when the file's mtime changes).

API keys, upload limits and per-system/talkgroup transcription settings take effect at once. A
file that would lock everyone out or move the data is refused with one log line, like a file that
no longer validates, and the running settings stay: an empty or comment-only file (an editor's
truncate-then-write), no ``api_keys`` where there were some, a changed ``data_dir`` /
``database_url`` / ``audio_dir``. Before, an empty file was applied: every upload got 401. Other
keys that need a restart (broker, listeners, what the Celery worker fixed when it started) are
reported, not applied half-way: they keep their running value. :func:`check_reload` is that rule,
used by the API's :class:`SettingsWatcher` (which keeps the refusal for ``/ready``) and by the worker
(``rdio_tasks.context``) alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from rdio_core.settings import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)

#: Dotted keys that keep their running value until a restart (a changed data place is refused
#: instead: MOVES_THE_DATA). The ``transcription`` ones are fixed when a Celery worker starts
#: (celeryconfig: pool size, time limits, the broker's visibility timeout, the retry backoff cap).
RESTART_ONLY = (
    "broker_url",
    "server",
    "tls",
    "transcription.concurrency",
    "transcription.task_time_limit_seconds",
    "transcription.retry_backoff_max_seconds",
    "alerts.retry_backoff_max_seconds",  # Celery reads a task's cap once (rdio_tasks.task_base)
    "transcription.heartbeat_seconds",  # a worker's heartbeat thread fixes its interval at start
)


def _get(settings: BaseModel, key: str) -> Any:
    value: Any = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _keep(new: Model, current: Model, key: str) -> Model:
    """``new`` with ``key`` (dotted) set back to its value in ``current``."""
    head, _, rest = key.partition(".")
    value = _keep(getattr(new, head), getattr(current, head), rest) if rest else getattr(current, head)
    return new.model_copy(update={head: value})


#: Where the calls live: a reload that changes one is refused as a whole (the rest of the file is
#: likely as wrong), so a later restart is the only way to move the data, and a deliberate one.
MOVES_THE_DATA = ("data_dir", "database_url", "audio_dir")


def check_reload(path: Path, current: Settings) -> Settings:
    """``path`` loaded again, restart-only keys kept as they run; ConfigError (one line, saying why)
    when it does not validate or would lock everyone out or move the data."""
    new = load_settings(path)
    if current.api_keys and not new.api_keys:
        raise ConfigError(
            f"{path} has no api_keys (the running settings have {len(current.api_keys)}): "
            "every upload and read would get 401"
        )
    moved = [key for key in MOVES_THE_DATA if _get(new, key) != _get(current, key)]
    if moved:
        raise ConfigError(
            f"{', '.join(moved)} changed in {path}: where calls are stored changes only with a restart"
        )
    changed = [key for key in RESTART_ONLY if _get(new, key) != _get(current, key)]
    if changed:
        log.warning("config keys %s changed: they take effect after a restart", ", ".join(changed))
        for key in changed:
            new = _keep(new, current, key)
    return new


def reload_settings(path: Path, current: Settings) -> Settings | None:
    """:func:`check_reload`, or None (logged) when it refuses, so the caller keeps ``current``."""
    try:
        return check_reload(path, current)
    except ConfigError as exc:
        _log_refusal(exc)
        return None


def _log_refusal(exc: ConfigError) -> None:
    log.error("config reload ignored, keeping the running settings: %s", exc)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class SettingsWatcher:
    def __init__(
        self, path: Path | None, current: Settings, apply: Callable[[Settings], None], interval: float = 2.0
    ) -> None:
        self.path = path
        self.current = current
        self.apply = apply
        self.interval = interval
        self._seen = _mtime(path) if path else None
        #: Why the last reload was refused, until a good file arrives (shown by /ready).
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="settings-watcher", daemon=True)

    def start(self) -> SettingsWatcher:
        if self.path is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def trigger(self) -> None:
        """SIGHUP: reload now, even if the mtime did not change."""
        self._seen = None
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.check()

    def check(self) -> bool:
        """Reload if the file changed; True when new settings were applied."""
        assert self.path is not None
        mtime = _mtime(self.path)
        if mtime is not None and mtime == self._seen:
            return False
        self._seen = mtime
        try:
            new = check_reload(self.path, self.current)
        except ConfigError as exc:
            _log_refusal(exc)
            self.error = str(exc)
            return False
        self.error = None
        self.current = new
        self.apply(new)
        log.info("config reloaded from %s", self.path)
        return True
