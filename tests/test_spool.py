"""A database outage refuses no upload: the spool takes the calls and commits them, once, in order.

Real parts: the real server, a PostgreSQL this test starts and stops itself (tests.own_postgres),
SQLite locked by another connection, and a steady stream of distinct SDRTrunk uploads in which every
answer is counted (SDRTrunk never retries, so any non-200 is a lost call).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import func, select

from rdio_api.call_fields import CallData
from rdio_api.ingest import CallWriter, IngestItem, StoredAudio
from rdio_api.spool import Drain, Spool, new_key
from rdio_core import db
from rdio_core.models import Call, Event, EventKind, TranscriptionJob
from rdio_core.settings import Settings, SpoolSettings
from rdio_core.storage import AudioStore
from tests.conftest import READ_KEY, UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, wait_until
from tests.own_postgres import OwnPostgres, pg_bin
from tests.upload_stream import UploadStream

SPOOL = {"wait_seconds": 0.5, "retry_seconds": 0.25}
needs_postgres = pytest.mark.skipif(
    pg_bin("initdb") is None, reason="initdb not installed (.ci/run installs it)"
)


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    pg = OwnPostgres().init()
    yield pg
    pg.destroy()


def spool_state(server: ServerProcess) -> str:
    try:
        return str(httpx.get(f"{server.url}/ready", timeout=5).json()["checks"].get("spool"))
    except httpx.HTTPError:
        return "unreachable"


def spooled(server: ServerProcess) -> int:
    state = spool_state(server)
    return int(state.split()[0]) if "calls spooled" in state else 0


def audio_files(data_dir: Path) -> int:
    root = data_dir / "audio"
    return sum(1 for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


# Transcription on, with no broker: each stored call must get exactly one job (it waits, pending, for
# a broker), so a fault that lost a call's job or queued it twice shows here; tests/
# test_outage_transcription.py runs the worker across an outage to the completed transcript.
QUEUED = {"enabled": True}


def assert_every_call_stored(
    stream: UploadStream, database_url: str, data_dir: Path, queued: bool = False
) -> None:
    """0 refused; 200s = rows = files; one row per key; every call has its created event and, with
    ``queued`` (transcription on, see ``QUEUED``), exactly one transcription job."""
    assert not stream.refused, f"{len(stream.refused)} refused: {stream.refused[:3]} ({stream.summary()})"
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(func.count(), func.count(func.distinct(Call.ingest_key)), func.count(Call.ingest_key))
                .select_from(Call)
                .where(Call.system_id == stream.system)
            ).one()
            talkgroups = conn.execute(
                select(func.count(func.distinct(Call.talkgroup))).where(Call.system_id == stream.system)
            ).scalar_one()
            jobs_total, jobs_calls = conn.execute(
                select(func.count(), func.count(func.distinct(TranscriptionJob.call_id)))
                .join(Call, Call.id == TranscriptionJob.call_id)
                .where(Call.system_id == stream.system)
            ).one()
            created = conn.execute(
                select(func.count())
                .select_from(Event)
                .join(Call, Call.id == Event.call_id)
                .where(Call.system_id == stream.system, Event.kind == EventKind.CALL_CREATED)
            ).scalar_one()
    finally:
        engine.dispose()
    assert rows == (stream.accepted, stream.accepted, stream.accepted), stream.summary()
    assert talkgroups == stream.accepted  # each call once: no duplicates, none missing
    assert created == stream.accepted
    if queued:
        assert (jobs_total, jobs_calls) == (stream.accepted, stream.accepted), stream.summary()
    assert audio_files(data_dir) == stream.accepted


@needs_postgres
def test_postgres_stopped_mid_stream_refuses_no_upload(tmp_path: Path, own_pg: OwnPostgres) -> None:
    server = ServerProcess(
        tmp_path, base_config(tmp_path / "data", own_pg.url, spool=SPOOL, transcription=QUEUED)
    ).start()
    stream = UploadStream(lambda: server.url, UPLOAD_KEY, system=801, rate=20).start()
    try:
        wait_until(lambda: stream.accepted >= 20, what="uploads before the outage")
        own_pg.stop()
        wait_until(lambda: spooled(server) > 0, what="spooled")
        time.sleep(5)  # the outage, uploads still arriving at 20/s
        during = spool_state(server)
        own_pg.start()
        time.sleep(2)
    finally:
        stream.stop()
    try:
        assert "calls spooled" in during, during
        wait_until(lambda: spool_state(server) == "empty", what="spool drained")
        health = httpx.get(
            f"{server.url}/api/health/transcription", headers={"X-API-Key": READ_KEY}, timeout=10
        ).json()
        assert health["checks"]["spool"]["value"] == 0
        metrics = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": READ_KEY}, timeout=10).text
        assert "rdio_spool_calls 0.0" in metrics and "rdio_spool_drained_calls_total" in metrics
        assert_every_call_stored(stream, own_pg.url, tmp_path / "data", queued=True)
    finally:
        server.stop()


def test_sqlite_locked_refuses_no_upload(tmp_path: Path) -> None:
    path = tmp_path / "rdio.db"
    url = f"sqlite:///{path}"
    server = ServerProcess(
        tmp_path, base_config(tmp_path / "data", url, spool=SPOOL, transcription=QUEUED)
    ).start()
    stream = UploadStream(lambda: server.url, UPLOAD_KEY, system=802, rate=20).start()
    try:
        wait_until(lambda: stream.accepted >= 20, what="uploads before the lock")
        other = sqlite3.connect(path, timeout=30, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock (a backup, a tool)
        time.sleep(4)
        during = spool_state(server)
        other.execute("COMMIT")
        other.close()
        time.sleep(2)
    finally:
        stream.stop()
    try:
        assert "calls spooled" in during, during
        wait_until(lambda: spool_state(server) == "empty", what="spool drained")
        assert_every_call_stored(stream, url, tmp_path / "data", queued=True)
    finally:
        server.stop()


@needs_postgres
def test_sigkill_while_calls_are_spooled_loses_and_duplicates_none(
    tmp_path: Path, own_pg: OwnPostgres
) -> None:
    config = base_config(tmp_path / "data", own_pg.url, spool=SPOOL, transcription=QUEUED)
    server = ServerProcess(tmp_path, config).start()
    stream = UploadStream(lambda: server.url, UPLOAD_KEY, system=803, rate=20).start()
    try:
        wait_until(lambda: stream.accepted >= 10, what="uploads before the outage")
        own_pg.stop()
        wait_until(lambda: spooled(server) >= 30, what="30 calls spooled")
    finally:
        stream.stop()
    assert server.proc is not None
    for proc in [*psutil.Process(server.proc.pid).children(), psutil.Process(server.proc.pid)]:
        proc.kill()  # SIGKILL, the server and its parent: no shutdown, no drain
    server.proc.wait(10)
    assert len(list((tmp_path / "data" / "spool").glob("*.json"))) >= 30
    own_pg.start()
    again = ServerProcess(tmp_path, config).start()
    try:
        wait_until(lambda: spool_state(again) == "empty", what="spool drained after restart")
        assert_every_call_stored(stream, own_pg.url, tmp_path / "data", queued=True)
    finally:
        again.stop()


def _item(n: int, relative: str) -> IngestItem:
    return IngestItem(
        call=CallData(system=804, talkgroup=200 + n, date_time=datetime(2026, 12, 5, 9, 0, n)),
        audio=StoredAudio(relative, f"{n:064x}", 10, "audio/mpeg", 1.0),
        client_kind="sdrtrunk",
        key_name="test",
        remote_addr=None,
        ingest_key=new_key(),
        received_at=datetime(2026, 12, 5, 9, 0, n),
    )


def test_drain_after_a_crash_between_commit_and_unlink_inserts_nothing_twice(tmp_path: Path) -> None:
    """A record whose row is already committed (the process died before removing the record, or the
    upload's own commit came back after it was spooled) is removed, not inserted again; the others
    are committed in arrival order."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rdio.db'}")
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    settings = Settings(data_dir=tmp_path, transcription={"enabled": False})
    writer = CallWriter(factory, settings)
    store = AudioStore(tmp_path / "audio")
    spool = Spool(tmp_path / "spool", SpoolSettings(max_calls=3))
    items = [_item(n, f"a/{n}.mp3") for n in range(3)]
    for item in items:
        store.write(item.audio.relative_path, b"x" * 10)
        assert spool.add(item)
    assert not spool.add(_item(9, "a/9.mp3"))  # max_calls: full, the caller answers 503
    writer.submit_nowait(items[1]).result(10)  # committed, record still there
    drain = Drain(spool, writer, store, lambda: None, lambda: spool.limits)
    assert drain.drain_once() == 3
    assert spool.pending() == 0 and not list((tmp_path / "spool").glob("*.json"))
    with factory() as session:
        rows = session.execute(select(Call.ingest_key, Call.talkgroup).order_by(Call.id)).all()
    # items[1] first (committed before the drain), then 0 and 2 in arrival order; one row per key.
    assert [tg for _, tg in rows] == [201, 200, 202]
    assert sorted(k for k, _ in rows) == sorted(i.ingest_key for i in items)
    assert all(store.absolute(i.audio.relative_path).exists() for i in items)
    writer.close()
    engine.dispose()
