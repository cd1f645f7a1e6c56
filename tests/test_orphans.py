"""A crash leaves no orphan that lives: files with no row, stale temp files and empty directories are
removed at start (and periodically), and nothing a call refers to is touched."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from rdio_core import db
from rdio_core.models import Call, System, utcnow
from rdio_core.orphans import sweep_orphans
from rdio_core.storage import AudioStore
from tests.conftest import UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, clip
from tests.test_upload import fresh_system, sdrtrunk_fields

OLD = time.time() - 2 * 3600


def age(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (OLD, OLD))


def test_sweep_removes_only_what_no_call_refers_to(tmp_path, database_url, db_engine):
    db.upgrade(db_engine)
    factory = db.make_session_factory(db_engine)
    store = AudioStore(tmp_path / "audio")
    system = fresh_system()
    kept_rel = store.relative_path(utcnow(), system, 1, "mp3")
    kept = store.write(kept_rel, b"ID3 kept")
    orphan = store.write(store.relative_path(utcnow(), system, 2, "mp3"), b"ID3 orphan")
    young = store.write(store.relative_path(utcnow(), system, 3, "mp3"), b"ID3 young orphan")
    spool = store.spool()
    spool.write(b"half an upload")
    spool.close()
    stray_tmp = kept.parent / ".old-style.mp3.1234.tmp"
    stray_tmp.write_bytes(b"x")
    empty = tmp_path / "audio" / "2020" / "01" / "01" / str(system) / "9"
    empty.mkdir(parents=True)
    age(kept, orphan, spool.path, stray_tmp)
    with factory() as session:
        session.add(System(id=system))
        session.flush()
        session.add(
            Call(
                system_id=system,
                talkgroup=1,
                date_time=utcnow(),
                audio_path=kept_rel,
                audio_sha256="0" * 64,
                audio_bytes=8,
                audio_mime="audio/mpeg",
                client_kind="test",
            )
        )
        session.commit()

    swept = sweep_orphans(store, factory, grace_seconds=3600)

    assert (swept.audio_files, swept.temp_files) == (1, 2)
    assert kept.exists() and young.exists()
    assert not orphan.exists() and not spool.path.exists() and not stray_tmp.exists()
    assert not (tmp_path / "audio" / "2020").exists()  # the whole empty chain went
    assert swept.directories >= 5
    assert store.incoming_dir.is_dir()  # the spool directory itself stays


def test_sigkill_during_a_burst_leaves_no_orphan_after_restart(tmp_path, database_url, db_engine):
    system = fresh_system()
    config = base_config(tmp_path / "data", database_url)
    config["storage"] = {"orphan_grace_seconds": 60}
    server = ServerProcess(tmp_path / "api", config).start()
    audio_root = tmp_path / "data" / "audio"
    audio = clip("speech_sdrtrunk.mp3")
    stop = threading.Event()

    def burst(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            fields = dict(sdrtrunk_fields(system, talkgroup=worker * 1000 + n, source=n))
            try:
                httpx.post(
                    f"{server.url}/api/call-upload", data=fields, files={"audio": ("a.mp3", audio)}, timeout=5
                )
            except httpx.HTTPError:
                return

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()

    def stored() -> int:
        with db_engine.connect() as conn:
            return conn.execute(select(func.count()).where(Call.system_id == system)).scalar_one()

    # Kill mid-burst: once the burst has stored calls, others are in flight between file and row.
    deadline = time.monotonic() + 30
    while stored() < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)

    # One orphan we know of, so the test proves the sweep ran whatever the kill left.
    planted = audio_root / "2020" / "01" / "01" / str(system) / "1" / "planted.mp3"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"ID3")
    age(*[p for p in audio_root.rglob("*") if p.is_file()])

    restarted = ServerProcess(tmp_path / "api", config).start()
    try:
        deadline = time.monotonic() + 30
        while "orphan sweep: removed" not in restarted.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "orphan sweep: removed" in restarted.log()
        files = {p.relative_to(audio_root).as_posix() for p in audio_root.rglob("*") if p.is_file()}
        with db_engine.connect() as conn:
            rows = set(conn.execute(select(Call.audio_path).where(Call.system_id == system)).scalars())
        assert rows, "the burst stored nothing before the kill"
        assert files == rows  # every file has its row, every row its file, no temp file
        assert not planted.exists()
        dirs = [p for p in audio_root.rglob("*") if p.is_dir() and p.name != ".incoming"]
        assert all(any(d.iterdir()) for d in dirs), "an empty directory was left"
        # A later upload into a swept directory still works.
        r = httpx.post(
            f"{restarted.url}/api/call-upload",
            data=dict(sdrtrunk_fields(system, talkgroup=424242, key=UPLOAD_KEY)),
            files={"audio": ("a.mp3", audio)},
        )
        assert r.status_code == 200, r.text
    finally:
        restarted.stop()


@pytest.mark.parametrize("grace", [59])
def test_grace_below_a_minute_is_a_config_error(tmp_path, grace):
    from rdio_core.settings import ConfigError, load_settings

    path = tmp_path / "c.yaml"
    path.write_text(f"storage: {{orphan_grace_seconds: {grace}}}\n")
    with pytest.raises(ConfigError, match=r"storage\.orphan_grace_seconds"):
        load_settings(path)
