"""A database outage with the worker transcribing: every call uploaded across it ends transcribed,
exactly once.

The spool tests prove that no upload is refused and each is stored once; this one adds the other
half of "no call lost": the real worker (tiny.en) is mid-job when the test's own PostgreSQL stops,
so it loses the database while claiming, heartbeating and storing results. Afterwards every stored
call has one job, completed, and one "transcript.updated" event: none lost, none done twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func, select

from rdio_core import db
from rdio_core.models import Call, Event, EventKind
from rdio_core.models import TranscriptionJob as Job
from tests.helpers import wait_until
from tests.own_postgres import OwnPostgres
from tests.stack import ADMIN, Stack
from tests.test_spool import SPOOL, assert_every_call_stored, needs_postgres, spooled
from tests.upload_stream import UploadStream

pytestmark = [pytest.mark.worker, needs_postgres]
SYSTEM = 831


def job_states(engine: Engine) -> tuple[int, dict[str, int], int, int]:
    """(calls, jobs by status, calls with more than one job, transcript events per call > 1)."""
    with engine.connect() as conn:
        calls = conn.execute(
            select(func.count()).select_from(Call).where(Call.system_id == SYSTEM)
        ).scalar_one()
        by_status = dict(
            conn.execute(
                select(Job.status, func.count())
                .join(Call, Call.id == Job.call_id)
                .where(Call.system_id == SYSTEM)
                .group_by(Job.status)
            ).all()
        )
        per_call = select(Job.call_id).join(Call, Call.id == Job.call_id).where(Call.system_id == SYSTEM)
        doubled_jobs = conn.execute(
            select(func.count()).select_from(
                per_call.group_by(Job.call_id).having(func.count() > 1).subquery()
            )
        ).scalar_one()
        doubled_events = conn.execute(
            select(func.count()).select_from(
                select(Event.call_id)
                .join(Call, Call.id == Event.call_id)
                .where(Call.system_id == SYSTEM, Event.kind == EventKind.TRANSCRIPT_UPDATED)
                .group_by(Event.call_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
    return calls, {str(k): int(v) for k, v in by_status.items()}, doubled_jobs, doubled_events


def test_worker_and_api_across_a_database_outage_transcribe_every_call_once(tmp_path: Path) -> None:
    pg = OwnPostgres().init()
    engine = db.make_engine(pg.url)  # one pool for every poll (pre-ping rides out the outage)
    stack = Stack(tmp_path, pg.url)
    stack.config["spool"] = SPOOL
    stack.server.config_path.write_text(yaml.safe_dump(stack.config))
    # A slow steady stream: the 2-core CI machine transcribes ~1-2 calls/s with tiny.en, and the
    # point is a worker busy at the moment the database goes, not a backlog.
    stream = UploadStream(lambda: stack.server.url, ADMIN, system=SYSTEM, rate=2, threads=4)
    try:
        stack.start()
        stream.start()
        wait_until(
            lambda: job_states(engine)[1].get("completed", 0) >= 3,
            timeout=180,
            what="the worker transcribing before the outage",
        )
        pg.stop()
        wait_until(lambda: spooled(stack.server) > 0, what="uploads spooled during the outage")
        time.sleep(8)  # the outage: uploads keep arriving, the worker's jobs cannot reach the database
        pg.start()
        wait_until(lambda: stream.accepted >= 28, timeout=120, what="uploads after the outage")
        stream.stop()
        wait_until(lambda: spooled(stack.server) == 0, what="spool drained")

        def all_finished() -> bool:
            calls, by_status, _, _ = job_states(engine)
            return calls == stream.accepted and by_status.get("completed", 0) == calls

        wait_until(all_finished, timeout=300, what=f"every call transcribed ({job_states(engine)})")
        calls, by_status, doubled_jobs, doubled_events = job_states(engine)
        assert by_status == {"completed": calls}, by_status
        assert doubled_jobs == 0 and doubled_events == 0  # none transcribed twice
        assert_every_call_stored(stream, pg.url, Path(stack.config["data_dir"]))
        assert "OperationalError" in stack.worker_log.read_text()  # the worker did meet the outage
    finally:
        stream.stop()
        stack.stop()
        engine.dispose()
        pg.destroy()
