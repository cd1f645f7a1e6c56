"""Issue 13, item 9, against real servers: what a client without a key (or with a narrow key) sees.

Closed by default: /metrics and /openapi.json need a read key (header or bearer, never in the URL);
/health and /ready stay open for probes, and so do the /docs and /redoc pages, which hold no secret:
they ask for the key and send it as a header (tests/test_docs_pages.py opens them in Chromium). A key
limited to some systems sees queue counts of those systems only and no broker figures, and a key
without a name is never shown by a piece of its secret.
"""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from sqlalchemy import func, or_, select

from rdio_core.embedded_redis import EmbeddedRedis
from rdio_core.models import Call, TranscriptionJob
from rdio_core.settings import ApiKey
from tests.conftest import ADMIN_KEY, READ_KEY, SCOPED_KEY, UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, clip
from tests.test_upload import fresh_system, post, sdrtrunk_fields

DOC_PAGES = ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/redoc.standalone.js")
NAMELESS_KEY = "NONAME-0123456789abcdef-secret"


def get(server, path: str, headers: dict | None = None, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers=headers or {}, params=params, timeout=10)


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json"])
def test_closed_by_default_without_a_key(server, path):
    r = get(server, path)
    assert r.status_code == 401 and r.json()["detail"].startswith("API key required")
    assert get(server, path, {"X-API-Key": "wrong"}).status_code == 401
    assert get(server, path, {"X-API-Key": UPLOAD_KEY}).status_code == 403


def test_probes_stay_open(server):
    assert get(server, "/health").json() == {"status": "ok"}
    assert get(server, "/ready").json()["checks"]["database"] == "ok"


def test_metrics_with_a_bearer_token_as_prometheus_sends_it(server):
    r = get(server, "/metrics", {"Authorization": f"Bearer {READ_KEY}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "rdio_uploads_total" in r.text
    assert get(server, "/metrics", {"X-API-Key": ADMIN_KEY}).status_code == 200
    # A key in the URL is never read (it would end up in history and logs).
    assert get(server, "/metrics", key=READ_KEY).status_code == 401
    assert get(server, "/openapi.json", key=READ_KEY).status_code == 401
    assert get(server, "/api/calls", key=READ_KEY).status_code == 401


@pytest.mark.parametrize("path", DOC_PAGES)
def test_docs_pages_are_open_offline_and_hold_no_key(server, path):
    r = get(server, path)
    assert r.status_code == 200, path
    if path in ("/docs", "/redoc"):
        assert "cdn" not in r.text.lower() and "/docs/assets/" in r.text  # nothing loaded from outside
        assert READ_KEY not in r.text and "?key=" not in r.text
    assert get(server, "/docs/assets/../../config.yaml").status_code == 404


def test_openapi_names_the_key_schemes_and_exact_id_bounds(server):
    raw = get(server, "/openapi.json", {"X-API-Key": READ_KEY}).text
    assert "9223372036854775807" in raw and "9.223372036854776e" not in raw
    spec = httpx.Response(200, content=raw).json()
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, database_url):
    work = tmp_path_factory.mktemp("open")
    config = base_config(work / "data", database_url, auth={"public_metrics": True, "public_docs": True})
    config["api_keys"] += [
        {"key": NAMELESS_KEY, "scopes": ["upload", "read"], "rate_limit_per_minute": 0},
    ]
    srv = ServerProcess(work, config).start()
    yield srv
    srv.stop()


def test_opened_one_by_one(open_server):
    for path in ("/metrics", "/openapi.json"):
        assert get(open_server, path).status_code == 200, path
    # public_read stays off: the data itself still needs a key.
    assert get(open_server, "/api/calls").status_code == 401
    assert get(open_server, "/api/transcription/queue/status").status_code == 401


def test_a_nameless_key_is_shown_by_a_digest_not_its_secret(open_server):
    label = f"key-{hashlib.sha256(NAMELESS_KEY.encode()).hexdigest()[:8]}"
    assert ApiKey(key=NAMELESS_KEY).label == label
    system = fresh_system()
    r = post(open_server, sdrtrunk_fields(system, key=NAMELESS_KEY), clip("speech_sdrtrunk.mp3"))
    assert r.status_code == 200, r.text
    call = get(open_server, f"/api/calls/{r.headers['x-call-id']}", {"X-API-Key": READ_KEY}).json()
    assert call["key_name"] == label and NAMELESS_KEY[:4] not in call["key_name"]
    assert NAMELESS_KEY[:4] not in open_server.log()


# -- queue status for a key limited to some systems ---------------------------------------------------


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory, database_url):
    """Transcription on, so uploads create jobs; its own broker, so nothing touches a shared Redis
    (no worker consumes it: the jobs stay queued)."""
    work = tmp_path_factory.mktemp("queue")
    redis = EmbeddedRedis(work / "redis", persist=False).start()
    config = base_config(
        work / "data",
        database_url,
        broker_url=redis.url,
        transcription={"enabled": True, "sweep_interval_seconds": 3600},
    )
    srv = ServerProcess(work, config).start()
    yield srv
    srv.stop()
    redis.stop()


def visible_job_count(db_engine) -> tuple[int, int]:
    """(all jobs, jobs on calls SCOPED_KEY may see: system 11, or system 12 talkgroups 100/101)."""
    with db_engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(TranscriptionJob)).scalar_one()
        mine = conn.execute(
            select(func.count())
            .select_from(TranscriptionJob)
            .join(Call, Call.id == TranscriptionJob.call_id)
            .where(or_(Call.system_id == 11, (Call.system_id == 12) & Call.talkgroup.in_([100, 101])))
        ).scalar_one()
    return total, mine


def test_queue_status_counts_only_what_a_limited_key_may_see(jobs_server, db_engine):
    audio = clip("speech_sdrtrunk.mp3")
    now = int(time.time())
    for n, (system, talkgroup) in enumerate([(11, 5), (12, 100), (12, 555), (fresh_system(), 100)]):
        r = post(jobs_server, sdrtrunk_fields(system, talkgroup=talkgroup, when=now - 100 + 7 * n), audio)
        assert r.status_code == 200, r.text
    total, mine = visible_job_count(db_engine)
    assert 0 < mine < total

    def counted(body: dict) -> int:
        return sum(body[s] for s in ("pending", "queued", "processing", "completed", "failed", "skipped"))

    admin = get(jobs_server, "/api/transcription/queue/status", {"X-API-Key": ADMIN_KEY}).json()
    scoped = get(jobs_server, "/api/transcription/queue/status", {"X-API-Key": SCOPED_KEY}).json()
    assert counted(admin) == total and counted(scoped) == mine
    assert admin["broker_queue_depth"] is not None
    for hidden in ("broker_queue_depth", "active_workers", "last_sweep"):
        assert scoped[hidden] is None
