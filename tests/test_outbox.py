"""rdio_core.outbox: task names and queues declared once, one lease claim for every leased table,
and one publisher (after commit, the broker-down pause, the sweeper) against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis as redis_client
from sqlalchemy import update

from rdio_core import jobs
from rdio_core.alerts import outbox as alert_outbox
from rdio_core.alerts.models import AlertDelivery, DeliveryStatus
from rdio_core.db import make_session_factory, upgrade
from rdio_core.embedded_redis import EmbeddedRedis
from rdio_core.models import Call, JobStatus, System, TranscriptionJob, utcnow
from rdio_core.outbox import ClaimOutcome, Message, Queue, TaskRef, lease
from rdio_core.outbox.publisher import BROKER_DOWN_SECONDS
from rdio_core.pipeline import STALE_AFTER_SECONDS, Pipeline
from rdio_core.settings import Settings
from rdio_tasks.broker import connect
from tests.helpers import bare_call, call_with_job, wait_for
from tests.test_upload import fresh_system


@pytest.fixture(scope="module")
def factory(db_engine):
    upgrade(db_engine)
    return make_session_factory(db_engine)


@pytest.fixture
def broker(tmp_path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    yield server
    server.stop()


def pipeline_for(server: EmbeddedRedis, factory, tmp_path) -> Pipeline:
    settings = Settings(data_dir=tmp_path, broker_url=server.url)
    return Pipeline(connect(server.url), factory, lambda: settings)


def job_status(factory, job_id: int) -> str:
    with factory() as session:
        job = session.get(TranscriptionJob, job_id)
        assert job is not None
        return job.status


# -- names -----------------------------------------------------------------------------------------


def test_every_task_is_routed_to_the_queue_its_reference_names():
    import celeryconfig
    from rdio_tasks.celery_app import app

    app.loader.import_default_modules()
    ours = {name for name in app.tasks if name.startswith("rdio_tasks.")}
    assert ours == {ref.task_name for ref in TaskRef}
    assert celeryconfig.task_routes == {ref.task_name: {"queue": ref.queue.value} for ref in TaskRef}
    assert celeryconfig.task_default_queue == Queue.GPU
    # Tone analysis has a queue of its own, named after what it holds.
    assert TaskRef.ANALYZE.queue is Queue.TONES and TaskRef.DELIVER_ALERT.queue is Queue.ALERTS


# -- the lease ------------------------------------------------------------------------------------


def new_call(session) -> Call:
    system = fresh_system()
    session.add(System(id=system, label="outbox"))
    session.flush()
    return bare_call(session, system)


def new_delivery(factory) -> int:
    with factory() as session:
        call = new_call(session)
        row = AlertDelivery(
            call_id=call.id,
            rule="r",
            action_index=0,
            action_kind="webhook",
            target="http://127.0.0.1:9/",
            stage="upload",
            matched_text="",
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(row)
        session.commit()
        return row.id


@pytest.mark.parametrize("table", ["jobs", "deliveries"])
def test_one_lease_claim_for_jobs_and_deliveries(factory, table):
    """Claimed once; busy while the lease runs; taken again once it lapses; ended when out of
    attempts; missing for no row."""
    leased, row_id, model = (
        (jobs.LEASED, call_with_job(factory, fresh_system()), TranscriptionJob)
        if table == "jobs"
        else (alert_outbox.LEASED, new_delivery(factory), AlertDelivery)
    )

    def claim(now=None):
        with factory() as session:
            outcome, _ = lease.claim(session, leased, row_id, 60, 2, now or utcnow())
            return outcome

    assert claim() is ClaimOutcome.CLAIMED
    assert claim() is ClaimOutcome.BUSY
    assert claim(utcnow() + timedelta(seconds=61)) is ClaimOutcome.CLAIMED  # the worker vanished
    gave_up = claim(utcnow() + timedelta(seconds=200))
    assert gave_up is ClaimOutcome.GAVE_UP
    with factory() as session:
        row = session.get(model, row_id)
        assert row.status == "failed" and row.error.startswith("gave up after 2 attempts")
    assert claim() is ClaimOutcome.FINAL
    with factory() as session:
        assert lease.claim(session, leased, 10**12, 60, 2, utcnow())[0] is ClaimOutcome.MISSING


# -- the publisher --------------------------------------------------------------------------------


def test_a_committed_job_is_published_and_marked_queued(broker, factory, tmp_path):
    pipeline = pipeline_for(broker, factory, tmp_path)
    job_id = call_with_job(factory, fresh_system())
    try:
        pipeline.jobs_committed([(job_id, 1)])
        assert wait_for(lambda: job_status(factory, job_id) == JobStatus.QUEUED)
    finally:
        pipeline.stop()
    counts = pipeline.jobs.broker_counts()
    assert counts is not None and counts.waiting >= 1


def test_broker_down_pauses_publishing_and_the_sweeper_publishes_when_it_is_back(broker, factory, tmp_path):
    pipeline = pipeline_for(broker, factory, tmp_path)
    publisher = pipeline.jobs
    first, second = (call_with_job(factory, fresh_system()) for _ in range(2))
    broker.stop()
    try:
        started = time.monotonic()
        assert publisher.publish(Message(first, 0)) is False  # fails fast, the row left as it is
        assert time.monotonic() - started < BROKER_DOWN_SECONDS
        assert publisher.sweep_once()["broker"] == "down"
        assert publisher.broker_probe() == "unavailable"
        revived = EmbeddedRedis(tmp_path / "redis2", port=broker.port, persist=False).start()
        try:
            # Within the pause the thread does not even try: the job waits for the sweeper.
            pipeline.jobs_committed([(second, 3)])
            time.sleep(0.5)
            assert job_status(factory, second) == JobStatus.PENDING
            # The sweeper republishes pending jobs older than stale_after_seconds.
            with factory() as session:
                old = utcnow() - timedelta(hours=1)
                session.execute(
                    update(TranscriptionJob)
                    .where(TranscriptionJob.id.in_([first, second]))
                    .values(updated_at=old)
                )
                session.commit()
            report = publisher.sweep_once()
            assert report["broker"] == "ok" and report["published"] >= 2, report
            assert job_status(factory, first) == job_status(factory, second) == JobStatus.QUEUED
        finally:
            revived.stop()
    finally:
        pipeline.stop()


def test_analysis_sweep_waits_while_the_tones_queue_holds_messages(broker, factory, tmp_path):
    """A stale unanalysed call is republished only into an empty queue: messages waiting may be
    its own (a worker down or behind), and another copy would only be a duplicate."""
    pipeline = pipeline_for(broker, factory, tmp_path)
    with factory() as session:
        call = new_call(session)
        call.received_at = utcnow() - timedelta(seconds=STALE_AFTER_SECONDS + 30)
        session.commit()
        call_id = call.id
    try:
        assert pipeline.analysis.publish(Message(call_id))  # a message nobody consumes yet
        held = pipeline.analysis.sweep_once()
        assert held["published"] == 0 and held["waiting"] == 1, held
        client = redis_client.Redis.from_url(broker.url)
        for key in client.keys(f"{Queue.TONES.value}*"):
            client.delete(key)
        swept = pipeline.analysis.sweep_once()
        assert swept["published"] >= 1 and swept["waiting"] == 0, swept
        with factory() as session:
            assert session.get(Call, call_id).analyzed_at is None  # published, not analysed here
    finally:
        pipeline.stop()
