"""Per-talkgroup priority and deferral on the real stack (redis-server, Hypercorn, Celery worker,
tiny.en): dispatch is served before chatter, and past the backlog depth chatter is deferred, shown
as deferred, and still transcribed once the queue drains."""

from __future__ import annotations

import signal
import time

import pytest

from rdio_core import jobs
from rdio_core.settings import TranscriptionSettings
from tests.helpers import clip, sweeps_after, utc_now
from tests.stack import READER, Stack
from tests.test_pipeline import upload
from tests.test_upload import fresh_system

pytestmark = pytest.mark.worker

DISPATCH, CHATTER = 1, 9  # talkgroups


def test_priority_resolves_talkgroup_then_system_then_default():
    tx = TranscriptionSettings.model_validate(
        {
            "default_priority": 3,
            "systems": [{"id": 7, "priority": 4, "talkgroups": [{"id": DISPATCH, "priority": 1}]}],
        }
    )
    assert tx.resolve(7, DISPATCH).priority == 1
    assert tx.resolve(7, 2).priority == 4
    assert tx.resolve(8, DISPATCH).priority == 3
    with pytest.raises(ValueError):
        TranscriptionSettings.model_validate({"systems": [{"id": 7, "priority": 0}]})


@pytest.fixture(scope="module")
def system() -> int:
    return fresh_system()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, db_engine, system):
    from rdio_core import db

    db.upgrade(db_engine)
    with db.make_session_factory(db_engine)() as session:
        waiting = jobs.backlog(session)  # other modules' leftovers share the session's database
    s = Stack(
        tmp_path_factory.mktemp("priority"),
        database_url,
        defer_backlog_depth=waiting + 2,
        systems=[
            {
                "id": system,
                "talkgroups": [{"id": DISPATCH, "priority": 1}, {"id": CHATTER, "priority": 5}],
            }
        ],
    ).start()
    yield s
    s.stop()


def _latest(stack: Stack, call_id: int) -> dict:
    return stack.get(f"/api/calls/{call_id}/transcription").json()["latest_job"]


def test_dispatch_before_chatter_and_deferred_chatter_runs_when_the_queue_drains(stack, system):
    stack.worker.send_signal(signal.SIGTERM)
    stack.worker.wait(30)
    try:
        start = int(time.time())
        chatter = [
            upload(stack, clip("speech.wav"), system=system, talkgroup=CHATTER, when=start + 10 * i)
            for i in range(2)
        ]
        # The backlog is at the depth now: the next chatter call is deferred, dispatch never is.
        held = upload(stack, clip("speech.wav"), system=system, talkgroup=CHATTER, when=start + 20)
        held_at = utc_now()
        dispatch = upload(stack, clip("speech.flac"), system=system, talkgroup=DISPATCH, when=start)

        job = _latest(stack, held)
        assert job["status"] == "deferred" and job["priority"] == 5, job
        assert "transcribed when the queue drains" in job["error"]
        assert stack.get(f"/api/calls/{held}").json()["transcription_status"] == "deferred"
        assert _latest(stack, dispatch)["priority"] == 1
        assert all(_latest(stack, c)["status"] in ("pending", "queued") for c in chatter)

        status = stack.get("/api/transcription/queue/status").json()
        assert status["deferred"] >= 1 and status["defer_backlog_depth"] is not None
        assert status["by_priority"]["5"]["deferred"] == 1, status
        assert sum(status["by_priority"]["1"].values()) == 1, status
        # The sweeper runs every second; two passes after the uploads with no worker: the backlog
        # stays deep, the job stays held.
        sweeps_after(stack.server.url, READER, held_at, passes=2)
        assert _latest(stack, held)["status"] == "deferred"
    finally:
        stack.start_worker()

    dispatch_done = stack.wait_call(dispatch, statuses=("completed",))["latest_job"]["finished_at"]
    finished = {c: stack.wait_call(c, statuses=("completed",))["latest_job"] for c in [*chatter, held]}
    assert all(dispatch_done < job["finished_at"] for job in finished.values()), (dispatch_done, finished)
    released = finished[held]
    assert released["error"] is None and released["attempts"] == 1 and released["text"], released
    status = stack.get("/api/transcription/queue/status").json()
    assert status["last_sweep"]["broker"] == "ok"
