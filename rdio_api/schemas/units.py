"""The radios of a system as ``GET /api/units`` answers them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rdio_api.schemas.base import UtcTime


class UnitOut(BaseModel):
    system: int
    unit: int
    alias: str | None = Field(description="the configured alias if any, else the learned one")
    alias_source: Literal["config", "learned"] | None
    learned_alias: str | None = Field(description="the last alias a recorder sent for it")
    first_seen_at: UtcTime | None = Field(
        description="its first call; null for a configured radio not yet heard"
    )
    last_seen_at: UtcTime | None


class UnitList(BaseModel):
    units: list[UnitOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
