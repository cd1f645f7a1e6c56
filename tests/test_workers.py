"""The worker registry and the heartbeat (rdio_core.workers) on the real database, and the routes
that read it: GET /api/transcription/workers and the queue status's ``active_workers``."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, select, update

from rdio_core import jobs
from rdio_core.db import make_session_factory, upgrade
from rdio_core.models import Event, EventKind, JobStatus, TranscriptionJob, utcnow
from rdio_core.settings import ConfigError, load_settings
from rdio_core.workers import Heartbeat, Identity, Worker
from tests.conftest import READ_KEY
from tests.helpers import call_with_job

_ids = iter(range(int(time.time() * 1000) % 10**9 + 500_000, 10**10))


@pytest.fixture(scope="module")
def factory(db_engine):
    upgrade(db_engine)
    return make_session_factory(db_engine)


@pytest.fixture
def registry(factory):
    """Heartbeats made by a test, their rows removed afterwards (the database is shared)."""
    made: list[Heartbeat] = []

    def make(name: str, queues: tuple[str, ...] = ("gpu",), lease: float = 60) -> Heartbeat:
        beat = Heartbeat(factory, Identity(name, list(queues), "tiny.en", "cpu", pid=4242), lambda: lease, 60)
        made.append(beat)
        return beat

    yield make
    with factory() as session:
        session.execute(delete(Worker).where(Worker.name.in_([b.identity.name for b in made])))
        session.commit()


def job(factory, job_id) -> TranscriptionJob:
    with factory() as session:
        return session.get(TranscriptionJob, job_id)


def new_job(factory) -> int:
    return call_with_job(factory, next(_ids) % 2_000_000_000, "workers")


def test_a_beat_renews_the_leases_of_its_own_running_jobs_only(factory, registry):
    mine, theirs = new_job(factory), new_job(factory)
    assert jobs.claim(factory, mine, "node-a@h:1", lease_seconds=5, max_attempts=3).outcome == "claimed"
    assert jobs.claim(factory, theirs, "node-b@h:2", lease_seconds=5, max_attempts=3).outcome == "claimed"
    before = job(factory, theirs).lease_expires_at
    beat = registry("node-a@h:1", lease=120)
    beat.track(mine)
    beat.track(theirs)  # a job another worker holds: never renewed by this one
    assert beat.beat() == 1
    assert job(factory, mine).lease_expires_at > utcnow() + timedelta(seconds=100)
    assert job(factory, theirs).lease_expires_at == before
    with factory() as session:
        row = session.get(Worker, "node-a@h:1")
        assert sorted(row.current_jobs) == sorted([mine, theirs])
        assert row.queues == ["gpu"] and row.model == "tiny.en" and row.device == "cpu" and row.pid == 4242
        assert row.stopped_at is None and row.last_heartbeat_at >= utcnow() - timedelta(seconds=5)


def test_a_duplicate_message_ending_does_not_stop_the_renewal(factory, registry):
    job_id = new_job(factory)
    jobs.claim(factory, job_id, "node-d@h:1", lease_seconds=5, max_attempts=3)
    beat = registry("node-d@h:1", lease=120)
    beat.track(job_id)
    beat.track(job_id)  # a redelivered message for the same job, in the same process
    beat.untrack(job_id)  # ...ends at once (busy)
    assert beat.beat() == 1
    beat.untrack(job_id)
    assert beat.beat() == 0


def test_a_result_from_a_lapsed_lease_is_discarded_after_a_takeover(factory, registry):
    """The dead (or frozen) worker's late write loses: the job completes once, for its new owner."""
    job_id = new_job(factory)
    jobs.claim(factory, job_id, "node-old@h:1", lease_seconds=5, max_attempts=3)
    with factory() as session:  # its heartbeat stopped: the lease runs out
        session.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    taken = jobs.claim(factory, job_id, "node-new@h:2", lease_seconds=20, max_attempts=3)
    assert taken.outcome == "claimed" and taken.job.attempts == 2
    old = registry("node-old@h:1")
    old.track(job_id)
    assert old.beat() == 0  # a revived old worker cannot take the lease back
    assert jobs.complete(factory, job_id, "node-old@h:1", {"text": "late"}) is False
    assert jobs.complete(factory, job_id, "node-new@h:2", {"text": "on time"}) is True
    assert jobs.complete(factory, job_id, "node-new@h:2", {"text": "again"}) is False
    row = job(factory, job_id)
    assert row.status == JobStatus.COMPLETED and row.text == "on time" and row.worker == "node-new@h:2"
    with factory() as session:
        events = session.execute(
            select(Event).where(Event.job_id == job_id, Event.kind == EventKind.TRANSCRIPT_UPDATED)
        ).all()
    assert len(events) == 1


def test_a_restarted_node_replaces_its_dead_process_in_the_registry(factory, registry):
    dead = registry("node-r@h:100")
    dead.beat()
    registry("node-r@h:200").take_over()
    with factory() as session:
        assert session.get(Worker, "node-r@h:100").stopped_at is not None


def test_workers_route_and_active_workers_read_the_registry(server, factory, registry):
    def get(path: str) -> dict:
        r = httpx.get(f"{server.url}{path}", headers={"X-API-Key": READ_KEY}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    live = registry("node-live@h:1")
    live.track(12345)
    live.beat()
    alerts_only = registry("node-alerts@h:2", queues=("alerts",))
    alerts_only.beat()
    silent = registry("node-silent@h:3")
    silent.beat()
    with factory() as session:
        session.execute(
            update(Worker)
            .where(Worker.name == "node-silent@h:3")
            .values(last_heartbeat_at=utcnow() - timedelta(minutes=10))
        )
        session.commit()
    listed = {w["name"]: w for w in get("/api/transcription/workers")["workers"]}
    assert listed["node-live@h:1"]["state"] == "live" and listed["node-live@h:1"]["current_jobs"] == [12345]
    assert listed["node-live@h:1"]["queues"] == ["gpu"] and listed["node-live@h:1"]["host"]
    assert listed["node-alerts@h:2"]["queues"] == ["alerts"]
    assert listed["node-silent@h:3"]["state"] == "offline"
    active = get("/api/transcription/queue/status")["active_workers"]
    assert active >= 1  # node-live (and any other live gpu worker in this shared database)
    live.stop()  # a clean stop: not active, and not offline either
    assert get("/api/transcription/queue/status")["active_workers"] == active - 1
    listed = {w["name"]: w for w in get("/api/transcription/workers")["workers"]}
    assert listed["node-live@h:1"]["state"] == "stopped"
    assert httpx.get(f"{server.url}/api/transcription/workers", timeout=10).status_code == 401


def test_a_heartbeat_too_slow_for_its_lease_stops_the_program_at_load(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("transcription:\n  lease_seconds: 10\n  heartbeat_seconds: 5\n")
    with pytest.raises(ConfigError, match="heartbeat_seconds must be at most a third"):
        load_settings(cfg)
    cfg.write_text("transcription:\n  lease_seconds: 15\n  heartbeat_seconds: 5\n")
    assert load_settings(cfg).transcription.lease_seconds == 15
