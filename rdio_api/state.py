"""Process-wide objects the routes share, built once in the app lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from limits import RateLimitItemPerMinute, storage, strategies
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rdio_api.form import PreAuthBudget
from rdio_api.ingest import CallWriter
from rdio_api.live import EventHub
from rdio_api.spool import Drain, Spool
from rdio_core.settings import ApiKey, Settings
from rdio_core.storage import AudioStore

if TYPE_CHECKING:
    from rdio_core.pipeline import Pipeline


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
    preauth: PreAuthBudget = field(init=False)
    events: EventHub | None = None  # made by the first /api/events stream
    spool: Spool | None = None  # uploads waiting for the database (None: spool.enabled false)
    drain: Drain | None = None
    # The publishers of jobs, tone analyses and alert deliveries (rdio_api.runtime); None without a
    # broker.
    pipeline: Pipeline | None = None
    broker_probe: Callable[[], str] | None = None  # /ready's "broker" check
    metrics_refresh: Callable[[], None] | None = None  # job gauges, read by /metrics
    config_error: Callable[[], str | None] | None = None  # why the last config reload was refused

    def __post_init__(self) -> None:
        upload = self.settings.upload
        self.preauth = PreAuthBudget(
            upload.unauthenticated_bytes_per_client,
            upload.unauthenticated_bytes_total,
            upload.unauthenticated_bytes_per_connection,
        )

    def apply_settings(self, new: Settings) -> None:
        """Swap in reloaded settings everywhere they are held."""
        self.settings = new
        self.writer.settings = new
        if self.spool is not None:
            self.spool.limits = new.spool
        self.preauth.per_client = new.upload.unauthenticated_bytes_per_client
        self.preauth.total = new.upload.unauthenticated_bytes_total
        self.preauth.per_connection = new.upload.unauthenticated_bytes_per_connection
