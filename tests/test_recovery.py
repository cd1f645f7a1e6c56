"""Recovery under a minute: two real workers, the one running a call is SIGKILLed mid-call, the
other completes it, once.

The stack runs the shipped recovery timing (lease 20 s renewed by a 5 s heartbeat, sweep every
5 s), not the short test timing of the other stack tests, so the bound measured here is the one a
deployment gets: the dead worker's lease lapses at most 20 s after its last beat, the sweeper
re-publishes within 5 s, and the surviving worker transcribes the call again.
"""

from __future__ import annotations

import io
import time
import wave
from datetime import UTC, datetime

import av
import numpy as np
import pytest
from sqlalchemy import delete, func, select

from rdio_core.models import Event, EventKind, JobStatus, TranscriptionJob
from rdio_core.settings import TranscriptionSettings
from rdio_core.workers import Worker
from tests.helpers import REPO, raw_request, sdrtrunk_body
from tests.stack import ADMIN, Stack
from tests.test_upload import fresh_system, sdrtrunk_fields

pytestmark = pytest.mark.worker
CORPUS = REPO / "tests" / "corpus" / "audio"
#: The issue's bound (the design plan's success criterion).
RECOVERY_BOUND_SECONDS = 60
DEFAULTS = TranscriptionSettings()


def long_call(repeats: int) -> bytes:
    """An ~11 s speech clip repeated: a call that keeps a worker busy for several seconds."""
    with av.open(str(CORPUS / "jfk_radio.mp3")) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        chunks = [f.to_ndarray().ravel() for fr in container.decode(audio=0) for f in resampler.resample(fr)]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.concatenate(chunks).astype(np.int16).tobytes() * repeats)
    return out.getvalue()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


@pytest.fixture
def stack(tmp_path, database_url):
    s = Stack(
        tmp_path,
        database_url,
        # The shipped recovery timing (config.example.yaml), not the stack's fast test timing.
        lease_seconds=DEFAULTS.lease_seconds,
        heartbeat_seconds=DEFAULTS.heartbeat_seconds,
        sweep_interval_seconds=DEFAULTS.sweep_interval_seconds,
        stale_after_seconds=DEFAULTS.stale_after_seconds,
    ).start()
    s.start_worker(second=True)
    yield s
    s.stop()


def warm_workers(stack: Stack, count: int, timeout: float = 180) -> dict[int, dict]:
    """The registry's live gpu workers of this stack once each has its model loaded (the heartbeat
    then reports the device it resolved, ``cpu``, instead of the configured ``auto``), by pid."""
    pids = {p.pid for p in (stack.worker, *stack.more_workers) if p is not None}
    deadline = time.monotonic() + timeout
    found: dict[int, dict] = {}
    while time.monotonic() < deadline:
        listed = stack.get("/api/transcription/workers").json()["workers"]
        found = {
            w["pid"]: w for w in listed if w["pid"] in pids and w["state"] == "live" and w["device"] == "cpu"
        }
        if len(found) == count:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"workers not warm after {timeout}s: {found}\n{stack.logs()}")


def test_sigkilled_worker_job_completes_on_the_other_within_a_minute_once(stack, db_engine):
    assert DEFAULTS.lease_seconds + DEFAULTS.sweep_interval_seconds < RECOVERY_BOUND_SECONDS
    registry = warm_workers(stack, 2)
    assert stack.get("/api/transcription/queue/status").json()["active_workers"] >= 2

    body = sdrtrunk_body(sdrtrunk_fields(fresh_system(), talkgroup=100, key=ADMIN), long_call(6))
    status, headers, text = raw_request(stack.server.port, body)
    assert status.startswith("HTTP/1.1 200"), (status, text)
    call_id = int(headers["x-call-id"])

    deadline = time.monotonic() + 60
    job: dict = {}
    while time.monotonic() < deadline:
        job = stack.get(f"/api/calls/{call_id}/transcription").json()["latest_job"]
        if job["status"] == "processing":
            break
        time.sleep(0.05)
    assert job["status"] == "processing", stack.logs()
    holder_pid = int(job["worker"].rsplit(":", 1)[1])
    assert holder_pid in registry, (job["worker"], registry)
    holder = next(p for p in (stack.worker, *stack.more_workers) if p is not None and p.pid == holder_pid)
    time.sleep(0.5)  # mid-call: well inside the several seconds this call takes
    assert stack.get(f"/api/transcription/jobs/{job['id']}").json()["status"] == "processing"
    killed_at = datetime.now(UTC)
    stack.kill_worker(holder)

    done = stack.wait_job(job["id"], timeout=RECOVERY_BOUND_SECONDS + 60)
    recovery = (parse_time(done["finished_at"]) - killed_at).total_seconds()
    print(f"\nrecovery: job {job['id']} completed {recovery:.1f} s after SIGKILL of {job['worker']}")
    assert done["status"] == "completed", stack.logs()
    assert done["worker"] != job["worker"] and done["attempts"] == 2
    assert "country" in done["text"].lower()
    assert recovery < RECOVERY_BOUND_SECONDS, stack.logs()

    # Exactly once: one job for the call, completed once, one transcript event.
    with db_engine.connect() as conn:
        rows = conn.execute(
            select(TranscriptionJob.status, func.count())
            .where(TranscriptionJob.call_id == call_id)
            .group_by(TranscriptionJob.status)
        ).all()
        events = conn.execute(
            select(func.count())
            .select_from(Event)
            .where(Event.call_id == call_id, Event.kind == EventKind.TRANSCRIPT_UPDATED)
        ).scalar_one()
    assert dict(rows) == {JobStatus.COMPLETED: 1}
    assert events == 1
    # The survivor's registry row counts it (within a heartbeat); the dead one stops counting as live.
    deadline = time.monotonic() + 3 * DEFAULTS.heartbeat_seconds
    while time.monotonic() < deadline:
        listed = {w["name"]: w for w in stack.get("/api/transcription/workers").json()["workers"]}
        if listed[done["worker"]]["jobs_done"] >= 1 and listed[job["worker"]]["state"] != "live":
            break
        time.sleep(0.5)
    assert listed[done["worker"]]["jobs_done"] >= 1 and listed[done["worker"]]["state"] == "live"
    assert listed[job["worker"]]["state"] == "late"  # "offline" after health.worker_offline_seconds
    # A clean stop (SIGTERM) marks the survivor's row stopped: not live, and never "offline".
    survivor = next(p for p in (stack.worker, *stack.more_workers) if p is not None and p is not holder)
    survivor.terminate()
    survivor.wait(30)
    listed = {w["name"]: w for w in stack.get("/api/transcription/workers").json()["workers"]}
    assert listed[done["worker"]]["state"] == "stopped", stack.logs()
    with db_engine.begin() as conn:  # the database is shared: leave no worker to turn "offline"
        conn.execute(delete(Worker).where(Worker.name == job["worker"]))
