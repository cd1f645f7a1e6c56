"""``POST /api/call-upload`` and ``POST /api/trunk-recorder-call-upload``: the Rdio Scanner contract.

Answers are plain text with Rdio Scanner's exact wording, because clients match on it: SDRTrunk's
connection test passes only when the body starts with ``Incomplete call data: no talkgroup`` and it
counts an upload only on 200 with ``Call imported successfully.`` in the body.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from rdio_api import metrics
from rdio_api.call_fields import CallData, IncompleteCall, from_rdio_fields, from_trunk_recorder
from rdio_api.form import FormError, UploadForm, read_form
from rdio_api.ingest import CommitError, IngestItem, StoredAudio
from rdio_api.state import AppState
from rdio_core.audio_probe import NotAudioError, probe
from rdio_core.settings import ApiKey
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["upload"])

SUCCESS = "Call imported successfully."
DUPLICATE = "duplicate call rejected"

_UPLOAD_DOC = {
    "description": "Rdio Scanner call upload (multipart/form-data). Answers are plain text.",
    "responses": {
        200: {"description": "Call imported successfully. (or: duplicate call rejected)"},
        401: {"description": "Invalid API key"},
        417: {"description": "Incomplete call data: no audio|dateTime|system|talkgroup"},
    },
}


def _text(status: int, body: str, result: str, headers: dict[str, str] | None = None) -> Response:
    metrics.UPLOADS.labels(result=result).inc()
    return PlainTextResponse(body, status_code=status, headers=headers)


def _client_kind(request: Request, form: UploadForm, default: str) -> str:
    if form.boundary and "sdrtrunk" in form.boundary.lower():
        return "sdrtrunk"
    agent = request.headers.get("user-agent", "").lower()
    if "trunkrecorder" in agent or "trunk-recorder" in agent:
        return "trunk-recorder"
    return default


def _store(store: AudioStore, call: CallData, data: bytes) -> StoredAudio:
    """Sniff, measure, hash and durably write the audio (runs in a worker thread)."""
    info = probe(data)
    relative = store.relative_path(call.date_time, call.system, call.talkgroup, info.extension)
    store.write(relative, data)
    return StoredAudio(
        relative_path=relative,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mime=info.mime,
        duration_seconds=info.duration_seconds,
    )


async def _handle(
    request: Request, parse: Callable[[dict[str, str]], CallData], default_kind: str
) -> Response:
    state: AppState = request.app.state.rdio
    settings = state.settings
    started = time.perf_counter()
    try:
        form = await read_form(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            settings.upload.max_upload_bytes,
        )
    except FormError as exc:
        return _text(exc.status, exc.message, "bad_request" if exc.status == 400 else "too_large")
    except ClientDisconnect:
        # The client went away mid-body (the answer goes nowhere, but it is not a server error).
        return _text(400, "Invalid multipart body: the client disconnected before the end.", "bad_request")

    fields = form.fields
    client = request.client.host if request.client else None
    key: ApiKey | None = settings.find_key(fields.get("key"))
    if key is None or key.disabled or not ({"upload", "admin"} & set(key.scopes)):
        return _text(401, "Invalid API key", "unauthorized")
    if not key.allows_ip(client):
        return _text(401, f"Invalid API key: not allowed from {client}", "unauthorized")

    if fields.get("test", "").strip() not in ("", "0", "false"):
        system_text = (fields.get("system") or fields.get("systemId") or "").strip()
        if system_text.isdigit() and not key.allows_system(int(system_text)):
            return _text(401, f"Invalid API key for system {system_text}.", "unauthorized")
        # SDRTrunk's connection test passes only on a body starting with this sentence.
        return _text(417, "Incomplete call data: no talkgroup", "test")

    if not state.limiter.hit(key, settings.upload.rate_limit_per_minute):
        limit = key.rate_limit_per_minute or settings.upload.rate_limit_per_minute
        return _text(429, f"Too many uploads for this API key (limit {limit} per minute).", "rate_limited")

    if not form.audio:
        return _text(417, "Incomplete call data: no audio", "incomplete")
    try:
        call = parse(fields)
    except IncompleteCall as exc:
        return _text(417, exc.message, "incomplete")
    if not key.allows(call.system, call.talkgroup):
        return _text(
            401, f"Invalid API key for system {call.system} talkgroup {call.talkgroup}.", "unauthorized"
        )
    call.audio_name = call.audio_name or (form.audio_filename or None)
    if call.audio_name:
        call.audio_name = call.audio_name[:255]
    call.audio_type = call.audio_type or form.audio_content_type

    try:
        stored = await run_in_threadpool(_store, state.store, call, form.audio)
    except NotAudioError as exc:
        return _text(415, f"Unsupported audio: {exc}.", "not_audio")
    except OSError:
        log.exception("could not store audio for system %s talkgroup %s", call.system, call.talkgroup)
        return _text(503, "Server cannot store audio right now; try again.", "storage_error")

    item = IngestItem(
        call=call,
        audio=stored,
        client_kind=_client_kind(request, form, default_kind),
        key_name=key.label,
        remote_addr=client,
    )
    try:
        result = await state.writer.submit(item)
    except CommitError:
        await run_in_threadpool(state.store.remove, stored.relative_path)
        return _text(503, "Database unavailable; the call was not stored.", "db_error")
    if result.duplicate:
        await run_in_threadpool(state.store.remove, stored.relative_path)
        log.info(
            "duplicate of call %s rejected (system %s tg %s)", result.call_id, call.system, call.talkgroup
        )
        return _text(200, DUPLICATE, "duplicate")

    metrics.UPLOAD_SECONDS.observe(time.perf_counter() - started)
    log.debug("call %s stored (%s, %s bytes)", result.call_id, stored.relative_path, stored.size)
    headers = {"X-Call-Id": str(result.call_id)}
    if "application/json" in request.headers.get("accept", ""):
        metrics.UPLOADS.labels(result="accepted").inc()
        return JSONResponse({"id": result.call_id, "message": SUCCESS}, headers=headers)
    return _text(200, SUCCESS, "accepted", headers)


@router.post("/api/call-upload", **_UPLOAD_DOC)
async def call_upload(request: Request) -> Response:
    return await _handle(request, from_rdio_fields, "rdio-scanner")


@router.post("/api/trunk-recorder-call-upload", **_UPLOAD_DOC)
async def trunk_recorder_call_upload(request: Request) -> Response:
    return await _handle(request, from_trunk_recorder, "trunk-recorder")
