"""Backfill over the API (admin keys): queue jobs for historical calls, then follow their progress.

``POST /api/transcription/backfill`` answers at once with the run's id: the jobs are created in a
background thread, 500 calls per transaction (rdio_core.backfill), so a request for a year of calls
neither times out nor holds the database. Posting the same request again resumes the same run: calls
it already covers get no second job. ``GET /api/transcription/backfill/{id}`` counts its jobs.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from rdio_api.deps import SessionDep, StateDep, require
from rdio_api.responses import AUTH, BAD_RANGE, INVALID, NOT_FOUND, TOO_LARGE, TRANSCRIPTION_OFF
from rdio_api.schemas import BackfillIn, BackfillOut
from rdio_api.state import AppState
from rdio_core import backfill
from rdio_core.bounds import Id
from rdio_core.settings import ApiKey

log = logging.getLogger(__name__)
router = APIRouter(tags=["transcription"])

AdminKey = Annotated[ApiKey | None, Depends(require("admin"))]
MAX_BODY = 16_384  # a request is under 300 bytes; read only after the key is checked

_running: set[int] = set()  # runs whose jobs a thread of this process is creating
_running_lock = threading.Lock()


async def _body(request: Request) -> BackfillIn:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise HTTPException(413, f"Request body over {MAX_BODY} bytes")
    try:
        return BackfillIn.model_validate_json(bytes(data) or b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


_BODY_DOC = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": BackfillIn.model_json_schema()}},
    }
}


@router.post(
    "/api/transcription/backfill",
    status_code=202,
    response_model=BackfillOut,
    openapi_extra=_BODY_DOC,
    responses={**BAD_RANGE, **AUTH, **TOO_LARGE, **INVALID, **TRANSCRIPTION_OFF},
)
async def start_backfill(request: Request, key: AdminKey, state: StateDep) -> BackfillOut:
    body = await _body(request)
    return await run_in_threadpool(_start, body, key, state)


def _start(body: BackfillIn, key: ApiKey | None, state: AppState) -> BackfillOut:
    if not state.settings.transcription.enabled:
        raise HTTPException(503, "Transcription is disabled (transcription.enabled: false)")
    if body.since is not None and body.until is not None and body.until <= body.since:
        raise HTTPException(400, "until must be after since")
    wanted = backfill.BackfillRequest(
        since=body.since,
        until=body.until,
        system=body.system,
        talkgroup=body.talkgroup,
        model=body.model,
        only_missing=body.only_missing,
    )
    run, resumed = backfill.open_run(
        state.factory, wanted, state.settings.transcription.backfill_priority, key.label if key else None
    )
    with _running_lock:
        start = run.id not in _running
        _running.add(run.id)
    if start:
        threading.Thread(target=_queue, args=(state, run.id), name=f"backfill-{run.id}", daemon=True).start()
    with state.factory() as session:
        current = backfill.progress(session, run.id)
    assert current is not None
    return _out(current, resumed)


def _queue(state: AppState, run_id: int) -> None:
    pipeline = state.pipeline
    try:
        backfill.queue_run(
            state.factory,
            run_id,
            pipeline.jobs_committed if pipeline is not None else None,
            slots=state.settings.transcription.backfill_limit(),
        )
    except Exception:  # the run is resumable: posting the same request again carries on
        log.exception("backfill run %s: queuing stopped", run_id)
    finally:
        with _running_lock:
            _running.discard(run_id)


@router.get(
    "/api/transcription/backfill/{run_id}",
    response_model=BackfillOut,
    responses={**AUTH, **NOT_FOUND, **INVALID},
)
def get_backfill(run_id: Id, key: AdminKey, session: SessionDep) -> BackfillOut:
    current = backfill.progress(session, run_id)
    if current is None:
        raise HTTPException(404, f"Backfill run {run_id} not found")
    return _out(current)


def _out(current: backfill.Progress, resumed: bool = False) -> BackfillOut:
    return BackfillOut(
        id=current.run_id,
        resumed=resumed,
        queuing_finished=current.queuing_finished,
        total=current.total,
        done=current.done,
        finished=current.finished,
        counts=current.counts,
    )
