"""The watched folder (``ingest.watch_dirs``): files become calls once complete, then are moved
aside, deleted or left; odd files are put aside with their reason; ``rdio-api serve`` runs it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from rdio_api.importers.watch import FolderWatcher
from rdio_api.ingest import CallWriter
from rdio_api.state import AppState
from rdio_core import db
from rdio_core.models import Call, CallTransmission, TranscriptionJob
from rdio_core.settings import Settings
from rdio_core.storage import AudioStore
from tests.conftest import READ_KEY, base_config
from tests.helpers import ServerProcess
from tests.importer_fixtures import tr_call, tr_meta, wav


@pytest.fixture
def make_state(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[AppState] = []

    def make(*watch_dirs: dict) -> AppState:
        settings = Settings(
            data_dir=tmp_path / "data",
            transcription={"enabled": True},
            ingest={"watch_dirs": list(watch_dirs)},
        )
        engine = db.make_engine(settings.resolved_database_url)
        db.upgrade(engine)
        factory = db.make_session_factory(engine)
        state = AppState(
            settings, engine, factory, AudioStore(settings.resolved_audio_dir), CallWriter(factory, settings)
        )
        made.append(state)
        return state

    yield make
    for state in made:
        state.writer.close()
        state.engine.dispose()


def count(state: AppState) -> int:
    with state.factory() as session:
        return session.execute(select(func.count()).select_from(Call)).scalar_one()


def test_files_become_calls_and_are_moved_aside(tmp_path, make_state):
    inbox = tmp_path / "inbox"
    state = make_state({"path": str(inbox), "system": 3, "settle_seconds": 0})
    watcher = FolderWatcher(state)

    stem = tr_call(inbox, "county", tr_meta(100, 1714564800), wav(1))  # trunk-recorder: sidecar
    (inbox / "200-1714564900_851000000.wav").write_bytes(wav(2))  # its file name, no sidecar
    (inbox / "holiday.wav").write_bytes(wav(3))  # a name the pattern cannot read
    (inbox / "notes.txt").write_text("not a call")  # not an audio extension: never touched

    assert watcher.scan_once() == {"imported": 2, "failed": 1}
    assert count(state) == 2
    done = inbox / ".done"
    assert (done / stem.relative_to(inbox)).with_suffix(".wav").is_file()
    assert (done / stem.relative_to(inbox)).with_suffix(".json").is_file()
    assert (done / "200-1714564900_851000000.wav").is_file()
    reason = (inbox / ".failed" / "holiday.wav.reason.txt").read_text()
    assert "name does not match pattern" in reason
    assert (inbox / "notes.txt").exists() and not list(inbox.glob("*.wav"))

    with state.factory() as session:
        calls = {c.talkgroup: c for c in session.execute(select(Call)).scalars()}
        assert calls[100].system_id == 3 and calls[100].client_kind == "trunk-recorder"
        assert calls[200].frequency == 851000000 and calls[200].client_kind == "watch"
        # A live call: a job at the default priority, its srcList as transmissions, alerts allowed.
        jobs = session.execute(select(TranscriptionJob.priority)).scalars().all()
        assert jobs == [state.settings.transcription.default_priority] * 2
        assert session.execute(select(func.count()).select_from(CallTransmission)).scalar_one() == 2
        assert "alerts" not in calls[100].meta["import"]

    # The same recording dropped again is found stored, and moved aside all the same.
    (inbox / "200-1714564900_851000000.wav").write_bytes(wav(2))
    assert watcher.scan_once() == {"duplicate": 1}
    assert count(state) == 2
    assert watcher.scan_once() == {}


def test_a_file_still_growing_waits_and_leave_takes_it_once(tmp_path, make_state):
    inbox = tmp_path / "inbox"
    state = make_state({"path": str(inbox), "system": 3, "settle_seconds": 0.3, "after": "leave"})
    watcher = FolderWatcher(state)
    name = inbox / "300-1714565000_851000000.wav"
    inbox.mkdir()
    data = wav(4)
    name.write_bytes(data[:100])
    assert watcher.scan_once() == {}  # just seen: not settled
    name.write_bytes(data)  # still being written: its size changed, the wait starts again
    assert watcher.scan_once() == {}
    deadline = time.monotonic() + 10
    result: dict[str, int] = {}
    while not result and time.monotonic() < deadline:
        result = watcher.scan_once()
        time.sleep(0.05)
    assert result == {"imported": 1}
    assert name.exists()  # left where it was
    assert watcher.scan_once() == {} and count(state) == 1
    with state.factory() as session:
        stored = session.execute(select(Call.audio_bytes)).scalar_one()
    assert stored == len(data)


def test_serve_watches_the_configured_folder(tmp_path, database_url):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = base_config(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'watch.db'}",
        ingest={"watch_dirs": [{"path": str(inbox), "system": 9, "after": "delete"}], "poll_seconds": 0.2},
    )
    server = ServerProcess(tmp_path / "srv", config).start()
    try:
        tr_call(inbox, "county", tr_meta(777, 1714564800), wav(9))
        deadline, calls = time.monotonic() + 30, []
        while not calls and time.monotonic() < deadline:
            body = httpx.get(f"{server.url}/api/calls", headers={"X-API-Key": READ_KEY}, timeout=5).json()
            calls = body.get("calls") or body.get("items") or []
            time.sleep(0.2)
        assert [(c["system"], c["talkgroup"]) for c in calls] == [(9, 777)], server.log()
        assert not any(p.is_file() for p in inbox.rglob("*")), json.dumps([str(p) for p in inbox.rglob("*")])
    finally:
        server.stop()


def test_while_the_database_refuses_files_wait_and_nothing_is_half_written(tmp_path, make_state, monkeypatch):
    from sqlalchemy.exc import OperationalError

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = make_state({"path": str(inbox), "system": 3, "settle_seconds": 0})
    watcher = FolderWatcher(state)
    name = inbox / "400-1714565000_851000000.wav"
    name.write_bytes(wav(40))

    real_commit = CallWriter._commit

    def refuse(self, items):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(CallWriter, "_commit", refuse)
    assert watcher.scan_once() == {"retry": 1}
    assert name.exists() and count(state) == 0
    stored = [p for p in state.store.root.rglob("*") if p.is_file() and ".incoming" not in p.parts]
    assert stored == []  # the copy made before the refused commit was removed

    monkeypatch.setattr(CallWriter, "_commit", real_commit)
    assert watcher.scan_once() == {"imported": 1}
    assert not name.exists() and count(state) == 1
