"""``GET /api/search``'s answer: calls with the words that matched."""

from __future__ import annotations

from pydantic import BaseModel, Field

from rdio_api.schemas.calls import CallOut


class SearchResult(BaseModel):
    call: CallOut
    snippet: str = Field(description="the matching words in context, from the transcript or the labels")


class SearchPage(BaseModel):
    results: list[SearchResult]
    next_cursor: str | None
