"""Process-wide objects the routes share, built once in the app lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from limits import RateLimitItemPerMinute, storage, strategies
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rdio_api.ingest import CallWriter
from rdio_core.settings import ApiKey, Settings
from rdio_core.storage import AudioStore


class RateLimiter:
    """Per-key moving-window limit on uploads (memory storage: per API process)."""

    def __init__(self) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._items: dict[int, RateLimitItemPerMinute] = {}

    def hit(self, key: ApiKey, default_per_minute: int) -> bool:
        per_minute = (
            key.rate_limit_per_minute if key.rate_limit_per_minute is not None else default_per_minute
        )
        if per_minute <= 0:
            return True
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return self._limiter.hit(item, "upload", key.key)


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: AudioStore
    writer: CallWriter
    limiter: RateLimiter = field(default_factory=RateLimiter)
    extras: dict[str, Any] = field(default_factory=dict)

    def apply_settings(self, new: Settings) -> None:
        """Swap in reloaded settings everywhere they are held."""
        self.settings = new
        self.writer.settings = new
        dispatcher = self.extras.get("dispatcher")
        if dispatcher is not None:
            dispatcher.settings = new


def get_state(request: Request) -> AppState:
    return request.app.state.rdio
