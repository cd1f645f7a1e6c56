"""``POST /api/call-upload`` and ``POST /api/trunk-recorder-call-upload``: the Rdio Scanner contract.

Answers are plain text with Rdio Scanner's exact wording, because clients match on it: SDRTrunk's
connection test passes only when the body starts with ``Incomplete call data: no talkgroup`` and it
counts an upload only on 200 with ``Call imported successfully.`` in the body.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from rdio_api import metrics, spool
from rdio_api.auth import has_scope
from rdio_api.call_fields import (
    CallData,
    IncompleteCall,
    clean_text,
    from_rdio_fields,
    from_trunk_recorder,
    hold_to_clock,
    parse_id,
)
from rdio_api.form import Authenticate, FormError, UploadForm, read_form
from rdio_api.hypercorn_compat import CONNECTION_EXTENSION
from rdio_api.ingest import CommitError, IngestItem, IngestResult, StoredAudio
from rdio_api.state import AppState
from rdio_api.upload_schema import CALL_UPLOAD_REQUEST, TRUNK_RECORDER_UPLOAD_REQUEST, UPLOAD_RESPONSES
from rdio_core.audio_probe import NotAudioError, probe
from rdio_core.calls import SENT_TEXT
from rdio_core.models import utcnow
from rdio_core.settings import ApiKey, Settings
from rdio_core.storage import AudioStore, SpooledAudio

log = logging.getLogger(__name__)
router = APIRouter(tags=["upload"])

SUCCESS = "Call imported successfully."
DUPLICATE = "duplicate call rejected"


def _text(status: int, body: str, result: str, headers: dict[str, str] | None = None) -> Response:
    metrics.UPLOADS.labels(result=result).inc()
    return PlainTextResponse(body, status_code=status, headers=headers)


# Metric label of each status a FormError can carry.
_FORM_RESULT = {
    400: "bad_request",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    429: "rate_limited",
}


def _client_kind(request: Request, form: UploadForm, default: str) -> str:
    if form.boundary and "sdrtrunk" in form.boundary.lower():
        return "sdrtrunk"
    agent = request.headers.get("user-agent", "").lower()
    if "trunkrecorder" in agent or "trunk-recorder" in agent:
        return "trunk-recorder"
    return default


def _authenticator(settings: Settings, client: str | None) -> Authenticate:
    """The upload key check, run by the form reader the moment the ``key`` part ends."""

    def authenticate(presented: str | None) -> ApiKey:
        key = settings.find_key(presented)
        if key is None or key.disabled or not has_scope(key, "upload"):
            raise FormError(401, "Invalid API key")
        if not key.allows_ip(client):
            raise FormError(401, f"Invalid API key: not allowed from {client}")
        return key

    return authenticate


def _store(store: AudioStore, call: CallData, audio: SpooledAudio) -> StoredAudio:
    """Identify and measure the spooled audio, then move it durably into place (worker thread)."""
    audio.close()  # flushed and fsynced before anything reads the file
    info = probe(audio.path)
    relative = store.relative_path(call.date_time, call.system, call.talkgroup, info.extension)
    store.commit(audio, relative)
    return StoredAudio(
        relative_path=relative,
        sha256=audio.sha256,
        size=audio.size,
        mime=info.mime,
        duration_seconds=info.duration_seconds,
    )


async def _handle(
    request: Request, parse: Callable[[dict[str, str]], CallData], default_kind: str
) -> Response:
    state: AppState = request.app.state.rdio
    settings = state.settings
    started = time.perf_counter()
    client = request.client.host if request.client else None
    low = state.store.low_space(settings.storage.min_free_bytes)
    if low is not None:  # checked before a byte is spooled: nothing half-written
        log.warning("upload refused: %s", low)
        return _text(
            507,
            f"Insufficient storage: {low}; the call was not stored.",
            "insufficient_storage",
            {"Connection": "close"},
        )
    try:
        form = await read_form(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            limits=settings.upload,
            store=state.store,
            authenticate=_authenticator(settings, client),
            budget=state.preauth,
            client=client,
            connection=request.scope.get("extensions", {}).get(CONNECTION_EXTENSION),
        )
    except FormError as exc:
        # Answered before the body was read to its end: close the connection, or a client still
        # writing its body (and Hypercorn, holding unread body events) would wait on each other.
        headers = {**(exc.headers or {}), "Connection": "close"}
        return _text(exc.status, exc.message, _FORM_RESULT.get(exc.status, "busy"), headers)
    except ClientDisconnect:
        # The client went away mid-body (the answer goes nowhere, but it is not a server error).
        return _text(400, "Invalid multipart body: the client disconnected before the end.", "bad_request")
    try:
        return await _accept(request, state, form, parse, default_kind, client, started)
    finally:
        form.discard()  # a no-op once the audio was committed


async def _accept(
    request: Request,
    state: AppState,
    form: UploadForm,
    parse: Callable[[dict[str, str]], CallData],
    default_kind: str,
    client: str | None,
    started: float,
) -> Response:
    settings = state.settings
    fields = form.fields
    key = form.key
    assert key is not None  # read_form authenticates or raises

    if fields.get("test", "").strip() not in ("", "0", "false"):
        system_text = (fields.get("system") or fields.get("systemId") or "").strip()
        system = parse_id(system_text)
        if system is not None and not key.allows_system(system):
            return _text(401, f"Invalid API key for system {system_text}.", "unauthorized")
        # SDRTrunk's connection test passes only on a body starting with this sentence.
        return _text(417, "Incomplete call data: no talkgroup", "test")

    if not state.limiter.hit(key, settings.upload.rate_limit_per_minute):
        limit = key.rate_limit_per_minute or settings.upload.rate_limit_per_minute
        return _text(429, f"Too many uploads for this API key (limit {limit} per minute).", "rate_limited")

    if form.audio is None or form.audio.size == 0:
        return _text(417, "Incomplete call data: no audio", "incomplete")
    try:
        call = parse(fields)
    except IncompleteCall as exc:
        return _text(417, exc.message, "incomplete")
    if hold_to_clock(call, utcnow(), settings.upload.max_future_skew_seconds):
        log.warning(
            "call from system %s talkgroup %s (key %s): %s",
            call.system,
            call.talkgroup,
            key.label,
            call.ignored["dateTime"],
        )
    if not key.allows(call.system, call.talkgroup):
        return _text(
            401, f"Invalid API key for system {call.system} talkgroup {call.talkgroup}.", "unauthorized"
        )
    # The audio part's own name and type when the form's fields left them out.
    call.audio_name = call.audio_name or clean_text(form.audio_filename, SENT_TEXT["audio_name"].limit)
    call.audio_type = call.audio_type or clean_text(form.audio_content_type, SENT_TEXT["audio_type"].limit)

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
        ingest_key=spool.new_key(),
        received_at=utcnow(),
    )
    outcome = await _commit_or_spool(state, item)
    if outcome is None:
        await run_in_threadpool(state.store.remove, stored.relative_path)
        return _text(503, "Database unavailable; the call was not stored.", "db_error")
    if isinstance(outcome, str):  # spooled
        metrics.UPLOAD_SECONDS.observe(time.perf_counter() - started)
        log.info("call spooled (database away): system %s tg %s", call.system, call.talkgroup)
        if "application/json" in request.headers.get("accept", ""):
            metrics.UPLOADS.labels(result="spooled").inc()
            return JSONResponse({"id": None, "message": SUCCESS, "spooled": True})
        return _text(200, SUCCESS, "spooled")
    result = outcome
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


async def _commit_or_spool(state: AppState, item: IngestItem) -> IngestResult | str | None:
    """The call's row committed (its result), or the call spooled ("spooled"), or None: refused,
    because the database failed and the spool is off or full (the caller answers 503)."""
    box = state.spool
    if box is not None and box.pending():
        # Calls already wait in the spool: this one goes behind them (arrival order).
        return "spooled" if await run_in_threadpool(box.add, item) else None
    fut = state.writer.submit_nowait(item)
    waiting = asyncio.wrap_future(fut)
    try:
        if box is None:
            return await waiting
        return await asyncio.wait_for(asyncio.shield(waiting), box.limits.wait_seconds)
    except CommitError as exc:
        if box is None or not exc.unavailable:
            return None
        return "spooled" if await run_in_threadpool(box.add, item) else None
    except TimeoutError:
        # The commit is still under way (SQLite locked, PostgreSQL not answering): spool the call;
        # should the commit land after all, the drain finds its key and inserts nothing.
        assert box is not None  # only the spool's wait times out
        waiting.add_done_callback(_consume)
        if await run_in_threadpool(box.add, item):
            return "spooled"
        try:  # spool full: wait for the commit as before the spool existed
            return await asyncio.wrap_future(fut)
        except CommitError:
            return None


def _consume(fut: asyncio.Future[IngestResult] | concurrent.futures.Future[IngestResult]) -> None:
    """Read a late commit's error so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


@router.post(
    "/api/call-upload",
    summary="Rdio Scanner / SDRTrunk call upload",
    openapi_extra=CALL_UPLOAD_REQUEST,
    responses=UPLOAD_RESPONSES,
    response_class=PlainTextResponse,
)
async def call_upload(request: Request) -> Response:
    return await _handle(request, from_rdio_fields, "rdio-scanner")


@router.post(
    "/api/trunk-recorder-call-upload",
    summary="trunk-recorder call upload (audio + meta JSON)",
    openapi_extra=TRUNK_RECORDER_UPLOAD_REQUEST,
    responses=UPLOAD_RESPONSES,
    response_class=PlainTextResponse,
)
async def trunk_recorder_call_upload(request: Request) -> Response:
    return await _handle(request, from_trunk_recorder, "trunk-recorder")
