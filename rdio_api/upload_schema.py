"""The documented request and responses of the two upload routes, for their OpenAPI operation.

The upload routes read the raw body themselves (streamed, leniently, see ``rdio_api.form``), so
FastAPI cannot infer a request schema from the signature; without this ``/docs`` showed no body at
all and schemathesis could not generate one. These dicts are written by hand from the fields
``rdio_api.call_fields`` reads (the free-text ones from ``rdio_core.calls.SENT_TEXT``) and the
statuses ``rdio_api.routes.upload`` answers, and ``tests/test_fuzz_api.py`` holds the server to
them (every status returned must be documented here, and schema-valid forms must not be refused
for a reason the schema does not state).

Wire them as ``@router.post(path, openapi_extra=CALL_UPLOAD_REQUEST, responses=UPLOAD_RESPONSES,
response_class=PlainTextResponse)`` (and ``TRUNK_RECORDER_UPLOAD_REQUEST`` for the variant).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from rdio_core.bounds import MAX_ID, MAX_TIME, MIN_TIME
from rdio_core.calls import SENT_TEXT

_EPOCH_MIN = int(MIN_TIME.replace(tzinfo=UTC).timestamp())
_EPOCH_MAX = int(MAX_TIME.replace(tzinfo=UTC).timestamp()) - 1

_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
# Optional numbers are read leniently: a value that is not a positive integer is dropped (noted on
# the call), never a reason to refuse it, since SDRTrunk would lose the call.
_OPTIONAL_ID = {"type": ["integer", "string"], "format": "int64"}


def _text(limit: int) -> dict[str, Any]:
    """A free-text field (rdio_core.calls.SENT_TEXT). Longer than its column it is cut, not refused:
    SDRTrunk never retries, so a call is not lost for a long label (hence no maxLength)."""
    return {"type": "string", "description": f"Stored up to {limit} characters."}


# A JSON array sent as a text part: SDRTrunk and rdio-scanner clients send "[101,102]".
_JSON_ARRAY = {"type": "string", "contentMediaType": "application/json", "examples": ["[101,102]"]}
_AUDIO = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "application/octet-stream",
    "description": "The recording: MP3, M4A/AAC, WAV, FLAC or Ogg/Opus, sniffed from its bytes.",
}
_DATE_TIME = {
    "anyOf": [
        {"type": "integer", "minimum": _EPOCH_MIN, "maximum": _EPOCH_MAX},
        {"type": "string", "format": "date-time"},
    ],
    "description": (
        f"Start of the call: Unix seconds (SDRTrunk) or RFC 3339; a number of 13 digits or more is "
        f"read as milliseconds (12 digits: refused). Between {MIN_TIME.date()} and {MAX_TIME.date()} "
        "UTC. More than upload.max_future_skew_seconds (24 h) ahead of the server's clock: stored at "
        "the time received, the time sent noted in meta.ignored_fields."
    ),
}

# Every field SDRTrunk, rdio-scanner clients and upload scripts send; unknown parts are ignored.
_RDIO_FIELDS: dict[str, Any] = {
    "key": {"type": "string", "description": "API key with the `upload` scope."},
    "system": {**_ID, "description": "System id."},
    "systemId": {**_OPTIONAL_ID, "description": "Alias of `system`, read only when `system` is absent."},
    "talkgroup": {**_ID, "description": "Talkgroup id."},
    "talkgroupId": {**_OPTIONAL_ID, "description": "Alias of `talkgroup`, read only when it is absent."},
    "dateTime": _DATE_TIME,
    "timestamp": {
        **_OPTIONAL_ID,
        "description": f"Start of the call in Unix milliseconds ({_EPOCH_MIN * 1000} to {_EPOCH_MAX * 1000}), "
        "read only when `dateTime` is absent.",
    },
    "frequency": {**_OPTIONAL_ID, "description": "Frequency in Hz; ignored unless a positive integer."},
    "frequencies": {
        **_JSON_ARRAY,
        "description": "JSON array of frequency entries (trunk-recorder freqList).",
    },
    "source": {**_OPTIONAL_ID, "description": "Radio id of the talker; ignored unless a positive integer."},
    "sources": {**_JSON_ARRAY, "description": "JSON array of source entries (trunk-recorder srcList)."},
    "patches": {**_JSON_ARRAY, "description": "JSON array of patched talkgroup ids, or `101,102`."},
    **{sent.name: _text(sent.limit) for sent in SENT_TEXT.values()},
    "test": {
        "type": "string",
        "description": "SDRTrunk's connection test: any value but empty/0/false answers 417 "
        "`Incomplete call data: no talkgroup` after checking the key.",
    },
    "audio": _AUDIO,
}

_TRUNK_RECORDER_FIELDS: dict[str, Any] = {
    "key": _RDIO_FIELDS["key"],
    "system": {**_ID, "description": "System id (else `meta.system`)."},
    "systemId": _RDIO_FIELDS["systemId"],
    "meta": {
        "type": "string",
        "contentMediaType": "application/json",
        "description": (
            "trunk-recorder's call JSON: `start_time` (Unix seconds), `talkgroup`, `freq`, `srcList`, "
            "`freqList`, `patched_talkgroups`, `talkgroup_tag`, `talkgroup_description`, "
            "`talkgroup_group`, `talkgroup_group_tag`, `short_name`, `audio_type`."
        ),
        "contentSchema": {
            "type": "object",
            "properties": {
                "start_time": {"type": "integer", "minimum": _EPOCH_MIN, "maximum": _EPOCH_MAX},
                "talkgroup": _ID,
                "freq": _ID,
                "srcList": {"type": "array"},
                "freqList": {"type": "array"},
                "patched_talkgroups": {"type": "array", "items": _ID},
                "talkgroup_tag": {"type": "string"},
                "talkgroup_description": {"type": "string"},
                "talkgroup_group": {"type": "string"},
                "talkgroup_group_tag": {"type": "string"},
                "short_name": {"type": "string"},
                "audio_type": {"type": "string"},
            },
        },
    },
    "dateTime": {**_DATE_TIME, "description": "Overrides `meta.start_time`."},
    "talkgroup": {**_ID, "description": "Overrides `meta.talkgroup`."},
    "frequency": {**_OPTIONAL_ID, "description": "Overrides `meta.freq`; ignored unless a positive integer."},
    "systemLabel": {
        "type": "string",
        "description": "Overrides `meta.short_name`; "
        f"stored up to {SENT_TEXT['system_label'].limit} characters.",
    },
    "audio": _AUDIO,
}

_ENCODING = {
    "audio": {"contentType": "audio/*, application/octet-stream"},
    "meta": {"contentType": "application/json, text/plain"},
}


def _request(
    description: str, properties: dict[str, Any], required: list[str], one_of_each: list[list[str]]
) -> dict[str, Any]:
    """``one_of_each``: groups of aliases of which at least one must be sent (``system``/``systemId``)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if one_of_each:
        schema["allOf"] = [{"anyOf": [{"required": [name]} for name in group]} for group in one_of_each]
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {
                    "schema": schema,
                    "encoding": {k: v for k, v in _ENCODING.items() if k in properties},
                },
            },
        }
    }


CALL_UPLOAD_REQUEST = _request(
    "Rdio Scanner / SDRTrunk upload. A connection test (`test`) needs only `key` and `system` "
    "(it may also come URL-encoded).",
    _RDIO_FIELDS,
    ["key", "audio"],
    [["system", "systemId"], ["talkgroup", "talkgroupId"], ["dateTime", "timestamp"]],
)
TRUNK_RECORDER_UPLOAD_REQUEST = _request(
    "trunk-recorder upload: `audio` (trunk-recorder sends it first) plus `meta` JSON; `system`, "
    "`dateTime` and `talkgroup` come from the form or from `meta`.",
    _TRUNK_RECORDER_FIELDS,
    ["key", "audio"],
    [],
)


def _plain(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "`Call imported successfully.`, or `duplicate call rejected` for a repeat inside the "
            "duplicate window. With `Accept: application/json`: `{id, message}`."
        ),
        "headers": {"X-Call-Id": {"description": "Id of the stored call.", "schema": {"type": "integer"}}},
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "message": {"type": "string"}},
                    "required": ["id", "message"],
                }
            },
        },
    },
    400: _plain("Unreadable body: bad content type, boundary or multipart framing, or a value out of range."),
    401: _plain("Invalid API key (unknown, disabled, no upload scope, source IP or system not allowed)."),
    408: _plain("The body did not arrive in time."),
    413: _plain("Body, audio or form fields over the configured limits."),
    415: _plain("The audio part is not a supported audio format, or is empty."),
    417: _plain(
        "`Incomplete call data: no <field>` (Rdio Scanner wording; SDRTrunk's connection test "
        "expects `no talkgroup`)."
    ),
    429: _plain(
        "Too many uploads for this key, or too many unauthenticated bytes in flight.",
        {"Retry-After": {"schema": {"type": "integer"}}},
    ),
    503: _plain("Storage or database temporarily unavailable; the call was not stored. Retry."),
    507: _plain("Disk full; the call was not stored."),
}
