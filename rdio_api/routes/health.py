"""Liveness, readiness and Prometheus metrics.

/health and /ready are always open (load balancers and Kubernetes probes send no key); /metrics
needs a read key unless ``auth.public_metrics`` (it names every system's traffic and the queue).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from rdio_api.deps import StateDep, metrics_access
from rdio_api.responses import AUTH, Responses
from rdio_api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    return Health(status="ok")


_READY: Responses = {
    200: {"description": "The database answers (broker status reported, not required)"},
    503: {"model": Readiness, "description": "The database does not answer"},
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
    body = Readiness(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    # A class with no media type: the 200 is documented as text/plain only, the errors as JSON.
    response_class=Response,
    responses={**_METRICS, **AUTH},
    dependencies=[Depends(metrics_access)],
)
def metrics(state: StateDep) -> Response:
    if state.metrics_refresh is not None:
        state.metrics_refresh()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
