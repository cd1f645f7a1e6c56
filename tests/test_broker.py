"""The broker is never a guess, and a broker that is down holds nothing up (issue 13, item 7).

Before: with no ``broker_url``, ``rdio-api serve`` published to whatever Redis answered on
127.0.0.1:6379 (this machine runs one that is not ours), and with the broker down each publish
spent ~19 s in the Redis result backend's reconnect loop and SIGTERM took ~10 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import psutil
import pytest
import yaml
from celery import Celery

from rdio_core.db import make_session_factory, upgrade
from rdio_core.embedded_redis import EmbeddedRedis
from rdio_core.models import JobStatus, TranscriptionJob
from rdio_core.pipeline import Pipeline, job_message
from rdio_core.settings import Settings
from rdio_tasks.broker import CeleryBroker, connect
from tests.conftest import ADMIN_KEY, READ_KEY, base_config
from tests.helpers import (
    ServerProcess,
    call_with_job,
    clip,
    raw_request,
    sdrtrunk_body,
    sweeps_after,
    utc_now,
)
from tests.test_upload import fresh_system, sdrtrunk_fields

LOCAL_REDIS_PORT = 6379  # the port a guessed default would reach


def clean_env(tmp_path, **config) -> dict[str, str]:
    """Environment with no RDIO_*/CELERY_* broker, pointing at a config file without broker_url."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RDIO_", "CELERY_"))}
    return {**env, "RDIO_CONFIG": str(path), "RDIO_WORKER_PRELOAD": "0", "HF_HUB_OFFLINE": "1"}


def upload_calls(server: ServerProcess, count: int) -> list[int]:
    system = fresh_system()
    ids = []
    for n in range(count):
        body = sdrtrunk_body(sdrtrunk_fields(system, talkgroup=100 + n), clip("speech.wav"))
        status, headers, text = raw_request(server.port, body)
        assert status.startswith("HTTP/1.1 200"), (status, text)
        ids.append(int(headers["x-call-id"]))
    return ids


def job_status(server: ServerProcess, call_id: int) -> str:
    r = httpx.get(f"{server.url}/api/calls/{call_id}/transcription", headers={"X-API-Key": READ_KEY})
    return r.json()["latest_job"]["status"]


def test_serve_without_broker_publishes_nothing(tmp_path, database_url, monkeypatch):
    monkeypatch.delenv("RDIO_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    config = base_config(
        tmp_path / "data",
        database_url,
        transcription={"enabled": True, "sweep_interval_seconds": 1, "stale_after_seconds": 1},
    )
    server = ServerProcess(tmp_path / "api", config).start()
    try:
        ids = upload_calls(server, 3)
        ready = httpx.get(f"{server.url}/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "not configured"
        time.sleep(2.5)  # more than two sweep intervals: a sweeper, had one started, would publish
        assert [job_status(server, c) for c in ids] == ["pending"] * 3
        status = httpx.get(
            f"{server.url}/api/transcription/queue/status", headers={"X-API-Key": ADMIN_KEY}
        ).json()
        assert status["broker_queue_depth"] is None and status["last_sweep"] is None
        # Nothing in the server ever opened a connection to a default broker.
        remote_ports = {c.raddr.port for c in psutil.Process(server.proc.pid).net_connections() if c.raddr}
        assert LOCAL_REDIS_PORT not in remote_ports and 5672 not in remote_ports
    finally:
        code = server.stop()
    assert code == 0
    # One warning per subsystem that would publish (transcription jobs, tone analysis), once each.
    warnings = [line for line in server.log().splitlines() if "broker_url is not set" in line]
    by_subsystem = [line.split("broker_url is not set")[0].rsplit(" ", 2)[-2] for line in warnings]
    assert len(by_subsystem) == len(set(by_subsystem)) and all("WARNING" in w for w in warnings), warnings
    assert any("transcription:" in w and "pending" in w for w in warnings), warnings


def test_serve_with_broker_down_stops_promptly(tmp_path, database_url):
    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    config = base_config(
        tmp_path / "data",
        database_url,
        broker_url=redis.url,
        transcription={"enabled": True, "sweep_interval_seconds": 1, "stale_after_seconds": 1},
    )
    server = ServerProcess(tmp_path / "api", config).start()
    try:
        redis.stop()
        ids = upload_calls(server, 4)
        uploaded = utc_now()
        assert httpx.get(f"{server.url}/ready").json()["checks"]["broker"] == "unavailable"
        # A sweeper pass begun after the uploads' commit has met the dead broker and published none.
        assert sweeps_after(server.url, ADMIN_KEY, uploaded)["broker"] == "down"
        assert [job_status(server, c) for c in ids] == ["pending"] * 4
    finally:
        code = server.stop()  # SIGTERM; the helper kills (code -9) after 15 s
        redis.stop()
    assert code == 0, server.log()[-2000:]


def new_job(factory) -> int:
    return call_with_job(factory, fresh_system(), "broker")


def test_publish_with_broker_down_leaves_the_job_pending(tmp_path, db_engine):
    upgrade(db_engine)
    factory = make_session_factory(db_engine)
    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    settings = Settings(data_dir=tmp_path, broker_url=redis.url)
    jobs_out = Pipeline(connect(redis.url), factory, lambda: settings).jobs
    up = new_job(factory)
    assert jobs_out.publish(job_message(up, 3)) is True
    redis.stop()
    for _ in range(3):  # the 2nd and later publishes were the slow ones (result-store retries)
        down = new_job(factory)
        assert jobs_out.publish(job_message(down, 3)) is False
        with factory() as session:
            job = session.get(TranscriptionJob, down)
            assert job.status == JobStatus.PENDING and job.task_id is None
    assert jobs_out.sweep_once()["broker"] == "down"
    assert jobs_out.broker_probe() == "unavailable"


def test_nothing_is_published_without_a_broker(tmp_path, db_engine):
    """Never a guessed broker: with no broker_url the publish fails and the job stays pending."""
    upgrade(db_engine)
    factory = make_session_factory(db_engine)
    bare = Celery("no-broker", set_as_current=False)
    bare.config_from_object("celeryconfig")
    bare.conf.update(broker_url=None)
    settings = Settings(data_dir=tmp_path)
    job_id = new_job(factory)
    assert (
        Pipeline(CeleryBroker(bare), factory, lambda: settings).jobs.publish(job_message(job_id, 3)) is False
    )
    with factory() as session:
        assert session.get(TranscriptionJob, job_id).status == JobStatus.PENDING


def test_worker_refuses_to_start_without_broker(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "rdio_tasks", "worker", "-Q", "gpu"],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("rdio-api worker: refusing to start: broker_url is not set"), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [["sweep", "--once"], ["flower", "--no-auth"]])
def test_broker_commands_refuse_without_broker(tmp_path, command):
    out = subprocess.run(
        [sys.executable, "-m", "rdio_api", *command],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and f"rdio-api {command[0]}: broker_url is not set" in out.stderr, out


def test_plain_celery_flower_refuses_without_broker(tmp_path):
    """``celery -A rdio_tasks flower`` (not through rdio-api) would fall back to AMQP on localhost."""
    env = {**clean_env(tmp_path), "RDIO_FLOWER__USER": "u", "RDIO_FLOWER__PASSWORD": "p"}
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "rdio_tasks", "flower"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "rdio-api flower: broker_url is not set" in out.stderr, out.stderr
