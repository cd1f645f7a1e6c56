"""Backfill: jobs for historical calls behind live ones, followed to the end, resumable without
duplicates; from the command line and from the API (admin keys)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from sqlalchemy import func, select, update

from rdio_core import backfill, db, jobs
from rdio_core.backfill import BackfillRequest
from rdio_core.models import JobStatus, System, TranscriptionJob
from tests.helpers import bare_call, clip, wait_for
from tests.stack import ADMIN, READER, Stack
from tests.test_pipeline import upload
from tests.test_upload import fresh_system


def _calls(factory, system: int, statuses: list[str | None]) -> list[int]:  # type: ignore[no-untyped-def]
    """One call per entry, with a job in that status (None: no job)."""
    ids = []
    with factory() as session:
        session.add(System(id=system))
        session.flush()
        for status in statuses:
            call = bare_call(session, system)
            if status is not None:
                jobs.create_job(session, call.id, priority=3).status = status
            ids.append(call.id)
        session.commit()
    return ids


def _run_jobs(factory, run_id: int, *columns) -> list[tuple]:  # type: ignore[no-untyped-def]
    """The run's jobs as (call id, priority), or as ``columns`` of them, oldest first."""
    columns = columns or (TranscriptionJob.call_id, TranscriptionJob.priority)
    with factory() as session:
        rows = session.execute(
            select(*columns)
            .join(backfill.BackfillJob, backfill.BackfillJob.job_id == TranscriptionJob.id)
            .where(backfill.BackfillJob.run_id == run_id)
            .order_by(TranscriptionJob.id)
        )
        return [tuple(row) for row in rows.all()]


def test_only_missing_skips_transcribed_and_busy_calls_and_a_rerun_adds_nothing(db_engine):
    db.upgrade(db_engine)
    factory = db.make_session_factory(db_engine)
    system = fresh_system()
    done, failed, none, busy = _calls(
        factory, system, [JobStatus.COMPLETED, JobStatus.FAILED, None, JobStatus.QUEUED]
    )
    published: list[tuple[int, int]] = []

    wanted = BackfillRequest(system=system, only_missing=True)
    run, resumed = backfill.open_run(factory, wanted, 5, "test")
    assert not resumed
    assert backfill.queue_run(factory, run.id, published.extend, batch=2) == 2
    assert _run_jobs(factory, run.id) == [(failed, 5), (none, 5)]  # at the backfill priority
    assert sorted(p for _, p in published) == [5, 5]

    again, resumed = backfill.open_run(factory, wanted, 5, "test")
    assert resumed and again.id == run.id
    assert backfill.queue_run(factory, run.id, published.extend) == 0  # nothing twice
    with factory() as session:
        progress = backfill.progress(session, run.id)
    assert progress is not None and progress.total == 2 and progress.queuing_finished
    assert progress.counts == {"pending": 2} and not progress.finished

    # Without only_missing: a re-transcription of every call not under way (busy has a queued job).
    everything = backfill.open_run(factory, BackfillRequest(system=system), 5, "test")[0]
    assert backfill.queue_run(factory, everything.id) == 1  # `done`: the others have jobs pending now
    assert [c for c, _ in _run_jobs(factory, everything.id)] == [done]
    assert busy not in [c for c, _ in _run_jobs(factory, everything.id)]


def _in_flight(factory) -> int:  # type: ignore[no-untyped-def]
    """Backfill jobs in flight in this database: other tests' runs take slots too."""
    with factory() as session:
        return session.execute(
            select(func.count())
            .select_from(TranscriptionJob)
            .where(TranscriptionJob.status.in_(backfill.IN_FLIGHT), backfill.is_backfill_job())
        ).scalar_one()


def _run_of(db_engine, calls: int, free_slots: int) -> tuple:  # type: ignore[no-untyped-def]
    """A backfill run over ``calls`` new calls with ``free_slots`` slots free: (factory, run id,
    the backfill jobs already in flight here)."""
    db.upgrade(db_engine)
    factory = db.make_session_factory(db_engine)
    busy = _in_flight(factory)
    system = fresh_system()
    _calls(factory, system, [None] * calls)
    run, _ = backfill.open_run(factory, BackfillRequest(system=system), 5, "test")
    backfill.queue_run(factory, run.id, slots=busy + free_slots)
    return factory, run.id, busy


def _statuses(factory, run_id: int) -> list[tuple]:  # type: ignore[no-untyped-def]
    return _run_jobs(factory, run_id, TranscriptionJob.status, TranscriptionJob.error)


def test_a_run_keeps_at_most_its_slots_in_flight(db_engine):
    """Jobs beyond ``backfill_slots`` are held (deferred, with a reason), are neither backlog nor
    released by the deep-backlog rule, and go one by one as slots free, oldest first."""
    db.upgrade(db_engine)
    factory = db.make_session_factory(db_engine)
    with factory() as session:
        backlog_before = jobs.backlog(session)
    slots = _in_flight(factory) + 2
    system = fresh_system()
    _calls(factory, system, [None] * 5)
    published: list[tuple[int, int]] = []
    run, _ = backfill.open_run(factory, BackfillRequest(system=system), 5, "test")
    assert backfill.queue_run(factory, run.id, published.extend, batch=2, slots=slots) == 5
    held = ("deferred", backfill.HELD_REASON.format(slots=slots))
    assert _statuses(factory, run.id) == [("pending", None)] * 2 + [held] * 3
    assert len(published) == 2 and all(p == 5 for _, p in published)

    assert jobs.release_deferred(factory, None, unless=backfill.is_backfill_job()) == []
    with factory() as session:
        assert jobs.backlog(session) == backlog_before + 2  # the held three are not backlog
    assert backfill.release(factory, slots) == []  # every slot taken

    first = published[0][0]
    with factory() as session:
        session.get(TranscriptionJob, first).status = JobStatus.COMPLETED
        session.commit()
    freed = backfill.release(factory, slots)
    assert len(freed) == 1 and freed[0][0] > max(j for j, _ in published)  # the oldest held job
    assert _statuses(factory, run.id) == [("completed", None)] + [("pending", None)] * 2 + [held] * 2
    assert len(backfill.release(factory, None)) == 2  # no limit: the rest


def test_releasers_at_the_same_moment_fill_the_slots_once(db_engine, monkeypatch):
    """A round of batched backfill calls ends together and each worker thread releases: taking
    turns, they fill the free slots and no more (SQLite's write lock, PostgreSQL's advisory lock).
    Each releaser here pauses between counting and picking, a little longer each: without turns,
    a later one counts before an earlier one commits and picks the next held jobs after it."""
    factory, run_id, busy = _run_of(db_engine, 8, free_slots=0)  # every slot taken: all eight held
    assert [s for s, _ in _statuses(factory, run_id)] == ["deferred"] * 8

    start = threading.Barrier(6)
    pause = threading.local()
    real = jobs.release_where

    def slow(session, room, where=None):  # type: ignore[no-untyped-def]
        time.sleep(pause.seconds)
        return real(session, room, where)

    monkeypatch.setattr(jobs, "release_where", slow)

    def release(n: int) -> list[tuple[int, int]]:
        pause.seconds = 0.05 * n
        start.wait()
        return backfill.release(factory, busy + 3)

    with ThreadPoolExecutor(6) as pool:
        released = [job for batch in pool.map(release, range(6)) for job in batch]
    assert len(released) == 3 and len(set(released)) == 3
    assert [s for s, _ in _statuses(factory, run_id)].count("pending") == 3
    _finish(factory, run_id)  # release is global: held jobs left here would take the next test's slots


def _finish(factory, run_id: int) -> None:  # type: ignore[no-untyped-def]
    with factory() as session:
        ids = select(backfill.BackfillJob.job_id).where(backfill.BackfillJob.run_id == run_id)
        session.execute(
            update(TranscriptionJob).where(TranscriptionJob.id.in_(ids)).values(status=JobStatus.COMPLETED)
        )
        session.commit()


def test_a_job_that_ends_publishes_the_next_held_one(db_engine, tmp_path):
    """The worker's side (Pipeline.job_ended, after a transcript is stored or a job ends): the next
    held job is released and published to a real redis-server at once, not at the next sweep."""
    from rdio_core.embedded_redis import EmbeddedRedis
    from rdio_core.pipeline import Pipeline
    from rdio_core.settings import Settings
    from rdio_tasks.broker import connect

    factory, run_id, busy = _run_of(db_engine, 2, free_slots=1)
    first, _ = [job_id for (job_id,) in _run_jobs(factory, run_id, TranscriptionJob.id)]
    assert [s for s, _ in _statuses(factory, run_id)] == ["pending", "deferred"]

    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        settings = Settings(
            data_dir=tmp_path, broker_url=server.url, transcription={"backfill_slots": busy + 1}
        )
        pipeline = Pipeline(connect(server.url), factory, lambda: settings)
        pipeline.job_ended()  # no slot free: nothing moves
        with factory() as session:
            session.get(TranscriptionJob, first).status = JobStatus.COMPLETED
            session.commit()
        pipeline.job_ended()
        assert wait_for(lambda: _statuses(factory, run_id)[1][0] == "queued"), _statuses(factory, run_id)
        client = redis.Redis.from_url(server.url)  # kombu keeps one list per priority step
        assert sum(client.llen(key) for key in client.keys("gpu*")) == 1  # the released job's
        pipeline.stop()
    finally:
        server.stop()


@pytest.fixture
def stack(shared_stack):
    return shared_stack


def _cli(stack: Stack, *args: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "rdio_api", "transcribe", *args],
        env=stack.env(),
        cwd=stack.work,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr + stack.logs()
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_cli_backfill_follows_completion_and_resumes(stack):
    system = fresh_system()
    ids = [upload(stack, clip("speech_sdrtrunk.mp3"), system=system, talkgroup=100 + i) for i in range(3)]
    for call_id in ids:
        stack.wait_call(call_id)

    missing, _ = _cli(stack, "--system", str(system), "--only-missing")
    assert missing["total"] == 0  # every call has its transcript already

    result, stderr = _cli(stack, "--system", str(system), "--since", "2000-01-01T00:00")
    assert result["total"] == 3 and result["done"] == 3 and result.get("completed") == 3, stderr
    assert "3 new jobs queued at priority 5" in stderr
    for call_id in ids:
        body = stack.get(f"/api/calls/{call_id}/transcription").json()
        assert len(body["history"]) == 2 and body["latest_job"]["priority"] == 5  # live ones were 3

    again, stderr = _cli(stack, "--system", str(system), "--since", "2000-01-01T00:00")
    assert "(resumed)" in stderr and "0 new jobs" in stderr
    assert again["total"] == 3  # the same run: no duplicate jobs


def test_cli_rejects_bad_times(stack):
    proc = subprocess.run(
        [sys.executable, "-m", "rdio_api", "transcribe", "--since", "yesterday"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--since/--until" in proc.stderr


def test_api_backfill_for_admin_keys(stack):
    system = fresh_system()
    now = int(time.time())
    ids = [
        upload(stack, clip("speech_sdrtrunk.mp3"), system=system, talkgroup=77, when=now - 60 * i)
        for i in range(2)
    ]
    for call_id in ids:
        stack.wait_call(call_id)
    url = f"{stack.server.url}/api/transcription/backfill"
    body = {"system": system, "talkgroup": 77}
    assert httpx.post(url, json=body, headers={"X-API-Key": READER}, timeout=10).status_code == 403

    started = httpx.post(url, json=body, headers={"X-API-Key": ADMIN}, timeout=10)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        state = httpx.get(f"{url}/{run_id}", headers={"X-API-Key": ADMIN}, timeout=10).json()
        if state["finished"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state["finished"], f"{state}\n{stack.logs()}"
    assert state["total"] == 2 and state["counts"] == {"completed": 2}

    resumed = httpx.post(url, json=body, headers={"X-API-Key": ADMIN}, timeout=10).json()
    assert resumed["id"] == run_id and resumed["resumed"] and resumed["total"] == 2

    bad = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert httpx.post(url, json=bad, headers={"X-API-Key": ADMIN}, timeout=10).status_code == 400
    typo = httpx.post(url, json={"sytem": 1}, headers={"X-API-Key": ADMIN}, timeout=10)
    assert typo.status_code == 422
    assert httpx.get(f"{url}/999999999", headers={"X-API-Key": ADMIN}, timeout=10).status_code == 404
