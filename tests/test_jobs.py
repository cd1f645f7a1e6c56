"""Job state machine (claims, leases, attempts, sweeping) on the real database, in-process."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from rdio_core import jobs
from rdio_core.db import make_session_factory, upgrade
from rdio_core.models import JobStatus, TranscriptionJob, utcnow
from tests.helpers import call_with_job


@pytest.fixture(scope="module")
def factory(db_engine):
    upgrade(db_engine)
    return make_session_factory(db_engine)


_ids = iter(range(int(time.time() * 1000) % 10**9, 10**10))


@pytest.fixture
def job_id(factory) -> int:
    return call_with_job(factory, next(_ids) % 2_000_000_000, "jobs")


def status(factory, job_id) -> TranscriptionJob:
    with factory() as session:
        return session.get(TranscriptionJob, job_id)


def test_only_one_claim_wins(factory, job_id):
    first = jobs.claim(factory, job_id, "w1", lease_seconds=60, max_attempts=3)
    second = jobs.claim(factory, job_id, "w2", lease_seconds=60, max_attempts=3)
    assert first.outcome == "claimed" and first.job.worker == "w1" and first.job.attempts == 1
    assert second.outcome == "busy" and 55 < second.retry_in <= 61


def test_completed_job_is_a_no_op(factory, job_id):
    jobs.claim(factory, job_id, "w1", 60, 3)
    assert jobs.complete(factory, job_id, "w1", {"text": "engine 12 responding"})
    again = jobs.claim(factory, job_id, "w2", 60, 3)
    assert again.outcome == "final"
    # A late duplicate result from another worker never overwrites the stored one.
    assert not jobs.complete(factory, job_id, "w2", {"text": "other"})
    job = status(factory, job_id)
    assert job.status == JobStatus.COMPLETED and job.text == "engine 12 responding" and job.attempts == 1


def test_lapsed_lease_is_reclaimed(factory, job_id):
    jobs.claim(factory, job_id, "dead-worker", 60, 3)
    with factory() as session:
        session.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    again = jobs.claim(factory, job_id, "w2", 60, 3)
    assert again.outcome == "claimed" and again.job.attempts == 2 and again.job.worker == "w2"
    # The dead worker's late result is discarded: it no longer owns the job.
    assert not jobs.complete(factory, job_id, "dead-worker", {"text": "stale"})


def test_poison_call_gives_up_after_max_attempts(factory, job_id):
    for n in range(2):
        assert jobs.claim(factory, job_id, f"w{n}", 60, 2).outcome == "claimed"
        jobs.release(factory, job_id, f"w{n}", "RuntimeError: boom")
    final = jobs.claim(factory, job_id, "w9", 60, 2)
    assert final.outcome == "gave_up"
    job = status(factory, job_id)
    assert job.status == JobStatus.FAILED and "gave up after 2 attempts" in job.error and "boom" in job.error


def test_mark_queued_never_reverts_a_claim(factory, job_id):
    jobs.claim(factory, job_id, "w1", 60, 3)
    jobs.mark_queued(factory, job_id, "task-1")
    assert status(factory, job_id).status == JobStatus.PROCESSING


def test_sweep_candidates(factory, job_id):
    now = utcnow()
    with factory() as session:
        picked = [
            j.id
            for j in jobs.sweep_candidates(session, now + timedelta(seconds=5), now, include_queued=False)
        ]
    assert job_id in picked  # pending and older than the (future) cut-off
    with factory() as session:
        picked = [
            j.id for j in jobs.sweep_candidates(session, now - timedelta(hours=1), now, include_queued=False)
        ]
    assert job_id not in picked  # fresh pending job: the publisher still has it
    jobs.mark_queued(factory, job_id, "t")
    with factory() as session:
        without = [j.id for j in jobs.sweep_candidates(session, now + timedelta(seconds=5), now, False)]
        with_q = [j.id for j in jobs.sweep_candidates(session, now + timedelta(seconds=5), now, True)]
    assert job_id not in without and job_id in with_q


def test_priority_mapping():
    assert [jobs.celery_priority(p) for p in (1, 2, 3, 4, 5)] == [0, 2, 4, 6, 8]
    assert jobs.celery_priority(0) == 0 and jobs.celery_priority(9) == 8


def test_one_job_row_builder_for_ingest_and_manual_jobs(factory, job_id):
    """Ingest's bulk insert and a manual job use the same column values (jobs.job_row)."""
    skipped = jobs.job_row(1, 3, JobStatus.SKIPPED, "audio too short")
    assert skipped["status"] == JobStatus.SKIPPED and skipped["error"] == "audio too short"
    assert skipped["finished_at"] == skipped["created_at"] and skipped["attempts"] == 0
    pending = jobs.job_row(1, 2, model="small.en", language="de")
    assert pending["status"] == JobStatus.PENDING and pending["finished_at"] is None
    manual = status(factory, job_id)  # made by jobs.create_job in the fixture
    for column in ("status", "priority", "attempts", "error", "model", "language", "finished_at"):
        assert getattr(manual, column) == jobs.job_row(manual.call_id, 3)[column], column


def test_claim_outcomes_are_an_enum(factory, job_id):
    claim = jobs.claim(factory, job_id, "w1", 60, 3)
    assert claim.outcome is jobs.ClaimOutcome.CLAIMED and claim.outcome == "claimed"
    assert jobs.claim(factory, 10**12, "w1", 60, 3).outcome is jobs.ClaimOutcome.MISSING
