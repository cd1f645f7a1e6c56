"""The typed FastAPI dependencies the routes share: the app state, a database session, the caller's
key, and the rule for which calls a key may see (which calls a request asks for:
``rdio_core.calls.CallFilter``).

A key travels in ``X-API-Key`` or ``Authorization: Bearer`` (what Prometheus sends). The docs pages
also take ``?key=``, because a browser cannot add a header to a page it opens; the key is then in
the URL (history, proxy logs), which config.example.yaml says. Both headers are declared as FastAPI
security schemes so /docs shows an Authorize button and the OpenAPI names how to authenticate.
Whether a key may do something is decided in rdio_api.auth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import Session, load_only

from rdio_api.auth import check_key
from rdio_api.state import AppState
from rdio_core.models import Call, JobStatus, TranscriptionJob
from rdio_core.settings import ApiKey, AuthSettings, Scope


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.rdio
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

# -- the caller's key -----------------------------------------------------------------------------

_header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from api_keys")
_bearer_key = HTTPBearer(auto_error=False, description="An API key from api_keys, as a bearer token")

IsPublic = Callable[[AuthSettings], bool]


def require(*scopes: Scope, public: IsPublic | None = None) -> Callable[..., ApiKey | None]:
    """A dependency that returns the caller's key, or None when ``public(settings.auth)`` lets an
    anonymous caller in. A key that is presented is always checked, public or not: public access is
    for visitors without one, not for typos. Keys come in headers only, never in a URL."""

    def dependency(
        request: Request,
        state: StateDep,
        header: Annotated[str | None, Depends(_header_key)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_key)],
    ) -> ApiKey | None:
        settings = state.settings
        token = (header or "").strip() or (bearer.credentials.strip() if bearer else "")
        if not token and public is not None and public(settings.auth):
            return None
        return check_key(settings, token, request.client.host if request.client else None, scopes)

    return dependency


read_access = require("read", public=lambda auth: auth.public_read)
metrics_access = require("read", public=lambda auth: auth.public_metrics)
docs_access = require("read", public=lambda auth: auth.public_docs)

ReadKey = Annotated[ApiKey | None, Depends(read_access)]
"""A read key, or None when ``auth.public_read`` lets anyone read."""
JobKey = Annotated[ApiKey | None, Depends(require("admin", "upload"))]
"""A key that may ask for a (re-)transcription: upload or admin."""

# -- what a key may see ---------------------------------------------------------------------------


def restrict_to_key(stmt: Select, key: ApiKey | None) -> Select:
    """Limit a call query to the systems/talkgroups a key is granted."""
    if key is None or isinstance(key.systems, str):  # ALL: every system
        return stmt
    clauses = []
    for grant in key.systems:
        if isinstance(grant.talkgroups, str):  # ALL: every talkgroup of the system
            clauses.append(Call.system_id == grant.id)
        else:
            clauses.append(and_(Call.system_id == grant.id, Call.talkgroup.in_(grant.talkgroups)))
    return stmt.where(or_(*clauses) if clauses else false())


def load_call(session: Session, call_id: int, key: ApiKey | None) -> Call:
    """The call, or 404 when it does not exist or the key may not see it (the same answer)."""
    call = session.execute(restrict_to_key(select(Call).where(Call.id == call_id), key)).scalar_one_or_none()
    if call is None:
        raise HTTPException(404, f"Call {call_id} not found")
    return call


def latest_jobs(session: Session, call_ids: list[int]) -> dict[int, TranscriptionJob]:
    """The most recent job per call: the completed one if any, else the newest."""
    if not call_ids:
        return {}
    # Only what CallOut shows (error: why a call was skipped or failed): a job's segments and raw
    # result are as large as its transcript, twice.
    columns = load_only(
        TranscriptionJob.call_id,
        TranscriptionJob.status,
        TranscriptionJob.text,
        TranscriptionJob.error,
        raiseload=True,
    )
    jobs = session.execute(
        select(TranscriptionJob)
        .options(columns)
        .where(TranscriptionJob.call_id.in_(call_ids))
        .order_by(TranscriptionJob.id)
    ).scalars()
    best: dict[int, TranscriptionJob] = {}
    for job in jobs:
        current = best.get(job.call_id)
        if current is None or job.status == JobStatus.COMPLETED or current.status != JobStatus.COMPLETED:
            best[job.call_id] = job
    return best


WAITING = (JobStatus.PENDING, JobStatus.QUEUED)


def queue_ahead(session: Session, jobs: dict[int, TranscriptionJob], key: ApiKey | None) -> dict[int, int]:
    """Call id -> how many waiting jobs run before its own (pending or queued; most urgent, then
    oldest first: the order the sweeper publishes and the broker serves). One windowed count for a
    page. Empty for a key limited to some systems: the position counts every system's jobs, which
    such a key may not learn about (the same rule as the queue status's broker figures)."""
    if key is not None and not isinstance(key.systems, str):
        return {}
    waiting = {job.id: call_id for call_id, job in jobs.items() if job.status in WAITING}
    if not waiting:
        return {}
    order = func.row_number().over(order_by=(TranscriptionJob.priority, TranscriptionJob.id)) - 1
    ranked = (
        select(TranscriptionJob.id.label("job_id"), order.label("ahead"))
        .where(TranscriptionJob.status.in_(WAITING))
        .subquery()
    )
    rows = session.execute(select(ranked.c.job_id, ranked.c.ahead).where(ranked.c.job_id.in_(list(waiting))))
    return {waiting[job_id]: int(ahead) for job_id, ahead in rows.tuples()}
