"""Pick up config file edits without a restart (on SIGHUP, or when the file's mtime changes).

API keys, upload limits and per-system/talkgroup transcription settings take effect at once. A
file that no longer validates is reported and ignored: the running settings stay. Keys that need
a restart (database, broker, directories, listeners, what the Celery worker fixed when it started)
are reported, not applied half-way: they keep their running value. :func:`reload_settings` is that
rule, used by the API's :class:`SettingsWatcher` and by the worker (``rdio_tasks.context``) alike.
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

#: Dotted keys that keep their running value until a restart. The ``transcription`` ones are fixed
#: when a Celery worker starts (celeryconfig: pool size, time limits, the broker's visibility
#: timeout, the retry backoff cap).
RESTART_ONLY = (
    "data_dir",
    "database_url",
    "audio_dir",
    "broker_url",
    "server",
    "tls",
    "transcription.concurrency",
    "transcription.task_time_limit_seconds",
    "transcription.retry_backoff_max_seconds",
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


def reload_settings(path: Path, current: Settings) -> Settings | None:
    """``path`` loaded again, restart-only keys kept as they run; None (logged) when it does not
    validate, so the caller keeps ``current``."""
    try:
        new = load_settings(path)
    except ConfigError as exc:
        log.error("config reload ignored, keeping the running settings: %s", exc)
        return None
    changed = [key for key in RESTART_ONLY if _get(new, key) != _get(current, key)]
    if changed:
        log.warning("config keys %s changed: they take effect after a restart", ", ".join(changed))
        for key in changed:
            new = _keep(new, current, key)
    return new


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
        new = reload_settings(self.path, self.current)
        if new is None:
            return False
        self.current = new
        self.apply(new)
        log.info("config reloaded from %s", self.path)
        return True
