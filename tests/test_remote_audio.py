"""A worker with no shared disk: its data_dir is not the API's, so it fetches each call's audio over
HTTP with a ``worker`` key and checks it against the sha256 stored at upload."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from sqlalchemy import select

from rdio_core import db
from rdio_core.models import Call
from tests.helpers import clip
from tests.stack import ADMIN, WORKER, Stack
from tests.test_pipeline import upload


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url):
    work = tmp_path_factory.mktemp("remote")
    s = Stack(work, database_url, max_attempts=2, lease_seconds=30)
    s.worker_env = {
        "RDIO_DATA_DIR": str(work / "gpu-box"),  # an audio directory of its own, empty
        "RDIO_WORKER__API_URL": s.server.url,
        "RDIO_WORKER__API_KEY": WORKER,
    }
    s.start()
    yield s
    s.stop()


def test_worker_key_fetches_audio_and_nothing_else(stack):
    call_id = upload(stack, clip("speech_sdrtrunk.mp3"))
    audio = stack.get(f"/api/calls/{call_id}/audio", key=WORKER)
    assert audio.status_code == 200 and audio.content == clip("speech_sdrtrunk.mp3")
    for path in ("/api/calls", f"/api/calls/{call_id}", "/api/transcription/queue/status", "/api/search"):
        assert stack.get(path, key=WORKER, q="x").status_code == 403, path
    job = stack.post_job(call_id, key=WORKER)
    assert job.status_code == 403


def test_worker_without_the_audio_directory_transcribes_by_fetching(stack):
    call_id = upload(stack, clip("speech_sdrtrunk.mp3"))
    body = stack.wait_call(call_id)
    assert body["latest_job"]["status"] == "completed", stack.logs()
    assert body["latest_job"]["text"].strip()
    # The worker's log is a redirected stream, written in blocks: its lines may trail the DB row.
    deadline = time.monotonic() + 15
    while f"call {call_id}: fetched" not in stack.worker_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = stack.worker_log.read_text()
    assert f"call {call_id}: fetched" in log and "sha256 verified" in log, stack.logs()
    # The copy is removed once decoded. Another job may be fetching at this moment (the sweeper
    # re-publishes any job left queued), so wait for the spool to drain rather than look once.
    box = stack.work / "gpu-box" / "audio"
    deadline = time.monotonic() + 20
    while [p for p in box.rglob("*") if p.is_file()] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in box.rglob("*") if p.is_file()] == [], stack.logs()


def _api_file(stack: Stack, call_id: int):  # type: ignore[no-untyped-def]
    engine = db.make_engine(stack.config["database_url"])
    try:
        with engine.connect() as conn:
            relative = conn.execute(select(Call.audio_path).where(Call.id == call_id)).scalar_one()
    finally:
        engine.dispose()
    return stack.work / "data" / "audio" / relative


def test_tampered_audio_is_never_transcribed(stack):
    call_id = upload(stack, clip("speech_sdrtrunk.mp3"))
    first = stack.wait_call(call_id)
    assert first["latest_job"]["status"] == "completed"
    path = _api_file(stack, call_id)
    tampered = clip("speech.wav")  # real speech, so only the digest can tell
    path.write_bytes(tampered)
    assert hashlib.sha256(tampered).hexdigest() != hashlib.sha256(clip("speech_sdrtrunk.mp3")).hexdigest()

    job = stack.post_job(call_id).json()
    done = stack.wait_job(job["id"])
    assert done["status"] == "failed", done
    assert "does not match its stored sha256" in done["error"]
    assert done["attempts"] == 2  # a mismatch is retried (a cut body may pass next time), then ends
    assert done["text"] is None


def test_audio_gone_on_the_api_fails_at_once(stack):
    call_id = upload(stack, clip("speech_sdrtrunk.mp3"))
    stack.wait_call(call_id)
    _api_file(stack, call_id).unlink()
    job = stack.post_job(call_id).json()
    done = stack.wait_job(job["id"])
    assert done["status"] == "failed" and "410" in done["error"], done
    assert done["attempts"] == 1  # permanent: not retried


def test_admin_key_still_reads_audio(stack):
    call_id = upload(stack, clip("speech_sdrtrunk.mp3"))
    r = httpx.get(f"{stack.server.url}/api/calls/{call_id}/audio", headers={"X-API-Key": ADMIN}, timeout=10)
    assert r.status_code == 200
