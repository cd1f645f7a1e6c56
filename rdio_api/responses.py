"""The error answers of the read, job and health routes, declared once for their OpenAPI ``responses=``.

Each route lists every status it can answer (schemathesis checks that a status it receives is one
the schema names, and that the body matches). Errors raised with ``HTTPException`` have the body
``{"detail": "<text>"}``; request validation keeps FastAPI's 422 body, a list of field errors, each
with ``loc`` (where: path, query or body, and the name) and ``msg`` (what is wrong, e.g. "Input
should be less than or equal to 9223372036854775807").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Message(BaseModel):
    """The body of every non-422 error of these routes."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationFailed(BaseModel):
    """FastAPI's 422 body, unchanged."""

    detail: list[FieldError]


Responses = dict[int | str, dict[str, Any]]


def _error(status: int, description: str) -> Responses:
    return {status: {"model": Message, "description": description}}


BAD_REQUEST = _error(400, "A cursor this server did not issue, or one that points outside the stored range")
BAD_RANGE = _error(400, "`until` is not after `since`")
UNAUTHORIZED = _error(401, "No API key, or one that is unknown or disabled")
FORBIDDEN = _error(403, "The key lacks the scope, or is not allowed from the client's address")
NOT_FOUND = _error(404, "No such call or job, or not one the key's systems/talkgroups may see")
GONE = _error(410, "The call exists but its audio file is missing from storage")
TOO_LARGE = _error(413, "The request body is larger than the route ever needs")
INVALID: Responses = {
    422: {
        "model": ValidationFailed,
        "description": "A parameter or body field is malformed or out of range (ids 0..2^63-1, times "
        "1970-01-02..2100-01-01 UTC); each error names the field (`loc`) and the reason (`msg`)",
    }
}
TRANSCRIPTION_OFF = _error(503, "Transcription is disabled on this server (transcription.enabled: false)")

AUTH = {**UNAUTHORIZED, **FORBIDDEN}
"""Routes behind ``require(...)``: 401 without a valid key, 403 for a key without the scope."""
