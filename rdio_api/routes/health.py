"""Liveness, readiness, transcription health and Prometheus metrics.

/health and /ready are always open (load balancers and Kubernetes probes send no key); /metrics
needs a read key unless ``auth.public_metrics`` (it names every system's traffic and the queue).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from rdio_api import helper_status, transcription_health
from rdio_api.deps import SessionDep, StateDep, metrics_access
from rdio_api.responses import AUTH, Responses
from rdio_api.schemas import Health, Readiness, TranscriptionHealth
from rdio_api.state import AppState
from rdio_core import workers
from rdio_core.models import utcnow

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    return Health(status="ok")


_READY: Responses = {
    200: {"description": "The database answers (broker status reported, not required)"},
    503: {
        "model": Readiness,
        "description": "The database does not answer, or free space is below storage.min_free_bytes",
    },
}
_METRICS: Responses = {200: {"description": "Prometheus text format", "content": {"text/plain": {}}}}


@router.get("/ready", response_model=Readiness, responses=_READY)
def ready(state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}
    ok = True
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
        ok = False
    if state.broker_probe is not None:
        checks["broker"] = state.broker_probe()
    ok = _storage_check(state, checks) and ok
    _config_check(state, checks)
    helpers = helper_status.read(state.settings.data_dir.resolve())
    if helpers is not None:  # under `rdio-api up`: helpers restart on their own, never fatal
        checks["helpers"] = helper_status.describe(helpers)
    if state.spool is not None:  # uploads are accepted while the database is away, up to its bound
        full = state.spool.full()
        checks["spool"] = state.spool.describe() if full is None else f"full: {full}"
    _workers_check(state, checks)
    body = Readiness(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


def _workers_check(state: AppState, checks: dict[str, str]) -> None:
    """How many transcription workers are live (a gpu-queue worker registers once its model is
    loaded). Reported, not required: an upload is stored and its job waits for a worker."""
    tx = state.settings.transcription
    if not tx.enabled:
        checks["workers"] = "transcription disabled"
        return
    try:
        with state.factory() as session:
            found = workers.list_workers(session)
        live = workers.active_count(found, utcnow(), transcription_health.fresh_seconds(state.settings))
    except Exception as exc:
        checks["workers"] = f"error: {type(exc).__name__}"
        return
    checks["workers"] = (
        f"ok: {live} transcription worker{'s' if live != 1 else ''}"
        if live
        else "missing: no transcription worker is live; calls are stored and wait in the queue"
    )


def _storage_check(state: AppState, checks: dict[str, str]) -> bool:
    """Not ready while free space is under storage.min_free_bytes (uploads get 507 meanwhile)."""
    low = state.store.low_space(state.settings.storage.min_free_bytes)
    checks["storage"] = "ok" if low is None else f"low: {low}"
    return low is None


def _config_check(state: AppState, checks: dict[str, str]) -> None:
    """A refused config reload, shown until a good file arrives. Still ready: the running settings
    serve, and taking every instance out of rotation for a bad edit is the lock-out refused here."""
    error = state.config_error() if state.config_error is not None else None
    checks["config"] = "ok" if error is None else f"reload ignored: {error}"


@router.get(
    "/metrics",
    # A class with no media type: the 200 is documented as text/plain only, the errors as JSON.
    response_class=Response,
    responses={**_METRICS, **AUTH},
    dependencies=[Depends(metrics_access)],
)
def metrics(state: StateDep, session: SessionDep) -> Response:
    try:
        if state.metrics_refresh is not None:
            state.metrics_refresh()
        helper_status.export(state.settings.data_dir.resolve())
        transcription_health.export(state, session)
    except SQLAlchemyError as exc:  # the upload and spool figures are still worth scraping
        log.warning("/metrics without the database's figures: %s", type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/api/health/transcription",
    response_model=TranscriptionHealth,
    responses=AUTH,
    dependencies=[Depends(metrics_access)],
)
def transcription(state: StateDep, session: SessionDep) -> TranscriptionHealth:
    """The design plan's alert conditions with their measured values: ``healthy``, or ``degraded``
    naming what is past its line (thresholds in ``health.*``). Always 200: degraded is not down, and
    /ready answers whether to send traffic. Same access rule as /metrics (it shows the queue)."""
    return transcription_health.measure(state, session)[0]
