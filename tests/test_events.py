"""``GET /api/events`` against a real server: calls and finished transcripts arrive live, a client
that reconnects with Last-Event-ID misses nothing, and a key sees only what it is granted."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from rdio_core import db, jobs
from rdio_core.models import JobStatus
from tests.conftest import READ_KEY, SCOPED_KEY, base_config
from tests.helpers import ServerProcess
from tests.test_search import transcribe, upload
from tests.test_upload import fresh_system


class Stream:
    """An SSE client on its own thread; parsed events land in a queue."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.opened = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            self._read(url, headers)
        except httpx.ReadTimeout:
            # A closed stream's thread was still waiting for its next line: that is its end, not
            # an error (left unhandled, pytest reported it against whichever test ran next).
            if not self._stop:
                raise

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=60)) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            self.opened.set()
            event: dict = {}
            for line in r.iter_lines():
                if self._stop:
                    return
                if not line:
                    if "data" in event:
                        self.events.put(event)
                    event = {}
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(": ")
                    event[field] = json.loads(value) if field == "data" else value

    def next(self, timeout: float = 10) -> dict:
        return self.events.get(timeout=timeout)

    def until(self, pred, timeout: float = 10) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.1, deadline - time.monotonic()))
            if pred(event):
                return event

    def close(self) -> None:
        self._stop = True


@contextmanager
def stream(server: ServerProcess, key: str = READ_KEY, **headers: str) -> Iterator[Stream]:
    s = Stream(f"{server.url}/api/events", {"X-API-Key": key, **headers})
    try:
        yield s
    finally:
        s.close()


def test_call_and_transcript_arrive_live(server, db_engine):
    system = fresh_system()
    with stream(server) as s:
        call_id = upload(server, system)
        created = s.until(lambda e: e["event"] == "call.created" and e["data"]["call"]["id"] == call_id)
        assert created["data"]["call"]["system"] == system and "meta" not in created["data"]["call"]
        job_id = transcribe(db_engine, call_id, "engine seven on scene")
        done = s.until(lambda e: e["event"] == "transcript.updated" and e["data"]["call_id"] == call_id)
        assert done["data"] == {
            "call_id": call_id,
            "job_id": job_id,
            "status": "completed",
            "text": "engine seven on scene",
            "segments": [],
            "error": None,
        }
        assert int(done["id"]) > int(created["id"])


def test_failed_job_is_announced(server, db_engine):
    call_id = upload(server, fresh_system())
    factory = db.make_session_factory(db_engine)
    with stream(server) as s:
        with factory() as session:
            job = jobs.create_job(session, call_id, 3, None, None)
            session.commit()
        jobs.claim(factory, job.id, "w", 60, 3)
        jobs.finish(factory, job.id, "w", JobStatus.FAILED, "undecodable audio")
        event = s.until(lambda e: e["event"] == "transcript.updated" and e["data"]["call_id"] == call_id)
        assert event["data"]["status"] == "failed" and event["data"]["error"] == "undecodable audio"


def test_last_event_id_resumes_without_loss(server):
    system = fresh_system()
    with stream(server) as s:
        first = upload(server, system)
        mark = s.until(lambda e: e["event"] == "call.created" and e["data"]["call"]["id"] == first)["id"]
    missed = [upload(server, system, talkgroup=300 + i) for i in range(3)]  # nobody listening
    with stream(server, **{"Last-Event-ID": mark}) as s:
        got = [s.until(lambda e: e["event"] == "call.created")["data"]["call"]["id"] for _ in missed]
    assert got == missed


def test_a_key_sees_only_its_systems(server):
    hidden = upload(server, fresh_system(), source=1)
    with stream(server, key=SCOPED_KEY) as s:
        upload(server, fresh_system(), source=2)
        allowed = upload(server, 11, talkgroup=77, source=fresh_system())
        event = s.until(lambda e: e["event"] == "call.created")
        assert event["data"]["call"]["id"] == allowed
    with stream(server, key=SCOPED_KEY, **{"Last-Event-ID": "0"}) as s:
        seen = set()
        try:
            while True:
                event = s.next(timeout=2)
                seen.add(
                    event["data"]["call"]["id"]
                    if event["event"] == "call.created"
                    else event["data"]["call_id"]
                )
        except queue.Empty:
            pass
    assert allowed in seen and hidden not in seen


def test_bad_last_event_id_is_4xx_and_no_key_is_401(server):
    r = httpx.get(f"{server.url}/api/events", headers={"X-API-Key": READ_KEY, "Last-Event-ID": "abc"})
    assert r.status_code == 422 and "last-event-id" in r.text.lower()
    assert httpx.get(f"{server.url}/api/events").status_code == 401


def test_shutdown_is_prompt_with_a_stream_open(tmp_path, database_url):
    proc = ServerProcess(tmp_path / "api", base_config(tmp_path / "data", database_url)).start()
    s = Stream(f"{proc.url}/api/events", {"X-API-Key": READ_KEY})
    started = time.monotonic()
    code = proc.stop()
    s.close()
    assert code == 0
    assert time.monotonic() - started < 5  # not the 10 s graceful timeout


def test_old_events_are_pruned_and_recent_ones_kept(server, db_engine):
    from datetime import timedelta

    from sqlalchemy import select, update

    from rdio_api.maintenance import prune_events
    from rdio_core.models import Event, utcnow

    old_call, new_call = upload(server, fresh_system()), upload(server, fresh_system())
    factory = db.make_session_factory(db_engine)
    with factory() as session:
        session.execute(
            update(Event).where(Event.call_id == old_call).values(created_at=utcnow() - timedelta(hours=30))
        )
        session.commit()
    assert prune_events(factory, keep_hours=24) >= 1
    with factory() as session:
        left = set(
            session.execute(select(Event.call_id).where(Event.call_id.in_([old_call, new_call]))).scalars()
        )
    assert left == {new_call}


def test_tones_found_after_upload_are_announced(server, db_engine):
    """The analyze task stores tones and writes a call.analyzed event: the stream carries the
    call's tones, so a feed card can show them without re-reading the call."""
    from sqlalchemy import insert, update

    from rdio_core.models import Call, Event, EventKind, utcnow

    call_id = upload(server, fresh_system())
    tone = {"kind": "two_tone", "frequencies": [1002.3, 1270.7], "start": 0.2, "end": 4.2}
    with stream(server) as s:
        with db_engine.begin() as conn:
            conn.execute(update(Call).where(Call.id == call_id).values(tones=[tone], analyzed_at=utcnow()))
            conn.execute(
                insert(Event).values(kind=EventKind.CALL_ANALYZED, call_id=call_id, created_at=utcnow())
            )
        event = s.until(lambda e: e["event"] == "call.analyzed" and e["data"]["call_id"] == call_id)
        assert event["data"]["tones"] == [{**tone, "digits": None, "name": None}]
