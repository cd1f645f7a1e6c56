"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from rdio_api.state import AppState, get_state

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
def ready(state: AppState = Depends(get_state)) -> JSONResponse:
    checks: dict[str, str] = {}
    ok = True
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
        ok = False
    probe = state.extras.get("broker_probe")
    if probe is not None:
        checks["broker"] = probe()
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics")
def metrics(state: AppState = Depends(get_state)) -> Response:
    refresh = state.extras.get("metrics_refresh")
    if refresh is not None:
        refresh()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
