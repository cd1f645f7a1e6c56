"""``rdio-api import ...``: archives of sdrtrunk-rdio-api, rdio-scanner (v6, v7) and trunk-recorder
come in through the live path's writer, with their odd rows reported and nothing imported twice."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from rdio_api import cli
from rdio_core import db
from rdio_core.alerts.models import AlertDelivery
from rdio_core.models import Call, CallTransmission, Event, Talkgroup, TranscriptionJob, Unit
from tests.fuzz_support import _own_database as own_database
from tests.importer_fixtures import (
    V6_SCHEMA,
    V7_SCHEMA,
    rdio_scanner_db,
    sdrtrunk_archive,
    tr_call,
    tr_meta,
    wav,
)

OUR_CONFIG_HEAD = """# our config, with a comment that must survive
data_dir: {data}
log_level: WARNING
transcription:
  enabled: true
api_keys:
  - key: our-own-key
    name: ours
    scopes: [upload, read]

upload:
  dedup_window_seconds: 2
alerts:
  rules:
    - name: tg 100
      talkgroups: [100]
      actions:
        - webhook: {{url: "http://127.0.0.1:9/hook", secret: s}}
"""


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[Path]:
    """Our config: SQLite, or a throwaway PostgreSQL database when RDIO_TEST_DATABASE_URL is set."""
    config = tmp_path / "ours" / "config.yaml"
    config.parent.mkdir()
    with own_database(tmp_path) as url:
        config.write_text(OUR_CONFIG_HEAD.format(data=tmp_path / "ours" / "data") + f"database_url: {url}\n")
        yield config
        while _engines:
            _engines.pop().dispose()


def run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> dict[str, Any]:
    assert cli.main(["import", *argv[:1], "--config", str(config), *argv[1:]]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


_engines: list = []


def factory(config: Path):  # type: ignore[no-untyped-def]
    engine = db.make_engine(yaml.safe_load(config.read_text())["database_url"])
    _engines.append(engine)
    return db.make_session_factory(engine)


def sdr_row(n: int, **extra: Any) -> dict[str, Any]:
    row = {
        "call_timestamp": f"2024-05-01 12:00:{n:02d}.000000",
        "system_id": "1",
        "system_label": "County",
        "frequency": 851012500,
        "talkgroup_id": 100,
        "talkgroup_label": "Fire Dispatch",
        "talkgroup_group": "Fire",
        "talkgroup_tag": "Dispatch",
        "source_radio_id": 1234,
        "talker_alias": "ENGINE 7",
        "patches": "101,102",
        "upload_ip": "192.168.1.20",
        "upload_api_key_id": "Main SDRTrunk node",
        "audio": wav(n),
    }
    row.update(extra)
    return row


def test_sdrtrunk_rdio_api_archive_with_its_keys(tmp_path, ours, capsys):
    their_key = {
        "key": "their-sdrtrunk-key-0001",
        "description": "Main SDRTrunk node",
        "allowed_ips": ["192.168.1.0/24"],
        "allowed_systems": ["1"],
    }
    rows = [
        sdr_row(0),  # naive, written as UTC
        sdr_row(10, call_timestamp="2024-05-01T12:00:10+00:00", talkgroup_id=200),  # aware
        sdr_row(20, source_radio_id=None, talker_alias=None),
        sdr_row(30, audio_file_path="/nowhere/gone.mp3"),  # missing audio file
        sdr_row(40, talkgroup_id=None),  # NULL talkgroup
        sdr_row(0),  # the first call again (same time, same audio)
        sdr_row(50, audio=b"not audio at all"),
    ]
    theirs = sdrtrunk_archive(tmp_path / "theirs", rows, [their_key])

    dry = run(capsys, ours, "sdrtrunk-rdio-api", "--from-config", str(theirs), "--dry-run")
    assert (dry["would_import"], dry["duplicates"], dry["failed"]) == (3, 1, 3)
    assert "their-sdrtrunk-key" not in ours.read_text()
    assert not (Path(yaml.safe_load(ours.read_text())["data_dir"]) / "audio" / "2024").exists()

    summary = run(capsys, ours, "sdrtrunk-rdio-api", "--from-config", str(theirs))
    assert summary["imported"] == 3 and summary["duplicates"] == 1
    assert summary["failed_by_reason"] == {"audio file missing": 1, "no talkgroup": 1, "not audio": 1}

    # Their key is ours now, the rest of our file as it was (comment included), SDRTrunk unchanged.
    config_text = ours.read_text()
    assert "# our config, with a comment that must survive" in config_text
    keys = {k["key"]: k for k in yaml.safe_load(config_text)["api_keys"]}
    assert keys["their-sdrtrunk-key-0001"] == {
        "key": "their-sdrtrunk-key-0001",
        "name": "Main SDRTrunk node",
        "scopes": ["upload"],
        "systems": [{"id": 1}],
        "allowed_ips": ["192.168.1.0/24"],
    }
    assert "our-own-key" in keys

    f = factory(ours)
    with f() as session:
        calls = session.execute(select(Call).order_by(Call.date_time)).scalars().all()
        assert [c.date_time for c in calls] == [
            datetime(2024, 5, 1, 12, 0, 0),
            datetime(2024, 5, 1, 12, 0, 10),
            datetime(2024, 5, 1, 12, 0, 20),
        ]
        first = calls[0]
        assert (first.system_id, first.talkgroup, first.talkgroup_label, first.patches) == (
            1,
            100,
            "Fire Dispatch",
            [101, 102],
        )
        assert first.key_name == "Main SDRTrunk node" and first.remote_addr == "192.168.1.20"
        assert first.client_kind == "sdrtrunk"
        assert (
            first.meta["import"]["source"] == "sdrtrunk-rdio-api" and first.meta["import"]["alerts"] is False
        )
        stored = Path(yaml.safe_load(ours.read_text())["data_dir"]) / "audio" / first.audio_path
        assert stored.read_bytes() == wav(0)
        # What an upload gets: units and transmissions, a search entry, an event; no job, no alert.
        assert session.execute(select(Unit.alias).where(Unit.unit == 1234)).scalar_one() == "ENGINE 7"
        assert session.execute(select(func.count()).select_from(CallTransmission)).scalar_one() == 2
        assert session.execute(select(func.count()).select_from(Event)).scalar_one() == 3
        assert session.execute(text("SELECT count(*) FROM call_search")).scalar_one() == 3
        assert session.execute(select(func.count()).select_from(TranscriptionJob)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(AlertDelivery)).scalar_one() == 0
        assert (
            session.execute(select(Talkgroup.label).where(Talkgroup.talkgroup == 200)).scalar_one()
            == "Fire Dispatch"
        )

    again = run(capsys, ours, "sdrtrunk-rdio-api", "--from-config", str(theirs))
    assert again["imported"] == 0 and again["duplicates"] == 4
    assert ours.read_text() == config_text
    with f() as session:
        assert session.execute(select(func.count()).select_from(Call)).scalar_one() == 3


def test_an_uploaded_call_is_not_imported_again_and_transcribe_queues_backfill(tmp_path, ours, capsys):
    """SDRTrunk sent a call to both servers: the import finds the live one. --transcribe queues the
    rest at backfill priority; --alerts lets rules fire on them."""
    from rdio_api.call_fields import from_rdio_fields
    from rdio_api.ingest import CallWriter, IngestItem, StoredAudio
    from rdio_core.settings import load_settings

    sdrtrunk_archive(tmp_path / "theirs", [sdr_row(0), sdr_row(5)])
    settings = load_settings(ours)
    f = factory(ours)
    db.upgrade(_engines[-1])
    writer = CallWriter(f, settings)
    live = from_rdio_fields({"dateTime": "1714564800", "system": "1", "talkgroup": "100", "source": "1234"})
    live_id = (
        writer.submit_nowait(
            IngestItem(live, StoredAudio("x.mp3", "f" * 64, 10, "audio/mpeg", 0.6), "sdrtrunk", "ours", None)
        )
        .result()
        .call_id
    )
    writer.close()

    summary = run(
        capsys,
        ours,
        "sdrtrunk-rdio-api",
        "--db",
        str(tmp_path / "theirs/data/rdio_calls.db"),
        "--transcribe",
        "--alerts",
    )
    assert summary["imported"] == 1 and summary["duplicates"] == 1
    with f() as session:
        (job,) = (
            session.execute(select(TranscriptionJob).where(TranscriptionJob.call_id != live_id))
            .scalars()
            .all()
        )
        assert (job.priority, job.status) == (settings.transcription.backfill_priority, "pending")
        fired = session.execute(select(AlertDelivery.call_id).order_by(AlertDelivery.call_id)).scalars().all()
        assert fired == [live_id, job.call_id]  # the live call at its upload, the import with --alerts
    assert "their" not in ours.read_text()  # --db alone brings no keys


def test_rdio_scanner_v6(tmp_path, ours, capsys):
    path = tmp_path / "rdio-scanner.db"
    conn = rdio_scanner_db(path, V6_SCHEMA)
    conn.execute("INSERT INTO rdioScannerGroups (_id, label) VALUES (1, 'Fire')")
    conn.execute("INSERT INTO rdioScannerTags (_id, label) VALUES (4, 'Dispatch')")
    conn.execute(
        "INSERT INTO rdioScannerSystems (id, label, blacklists, talkgroups, units) VALUES (?, ?, '', ?, ?)",
        (
            11,
            "Metro",
            json.dumps([{"id": 100, "label": "FD1", "name": "Fire Dispatch 1", "groupId": 1, "tagId": 4}]),
            json.dumps([{"id": 4242, "label": "Ladder 3"}]),
        ),
    )
    insert = (
        "INSERT INTO rdioScannerCalls (audio, audioName, audioType, dateTime, frequencies, frequency, patches,"
        " source, sources, system, talkgroup) VALUES (?, ?, 'audio/wav', ?, ?, 851000000, '[]', ?, ?, 11, ?)"
    )
    sources = json.dumps([{"pos": 0, "src": 4242}, {"pos": 1.5, "src": 77}])
    conn.execute(insert, (wav(1), "a.wav", "2023-03-04 05:06:07", "[]", 4242, sources, 100))
    conn.execute(insert, (wav(2), "b.wav", "2023-03-04 05:07:07+00:00", "[]", None, "[]", 100))
    conn.execute(insert, (b"", "empty.wav", "2023-03-04 05:08:07", "[]", None, "[]", 100))  # no audio
    conn.commit()
    conn.close()

    summary = run(capsys, ours, "rdio-scanner", "--db", str(path))
    assert (summary["imported"], summary["failed_by_reason"]) == (2, {"no audio": 1})
    with factory(ours)() as session:
        call = session.execute(select(Call).order_by(Call.id)).scalars().first()
        assert call is not None
        assert (call.system_id, call.system_label, call.talkgroup_label, call.talkgroup_name) == (
            11,
            "Metro",
            "FD1",
            "Fire Dispatch 1",
        )
        assert (call.talkgroup_group, call.talkgroup_tag, call.date_time) == (
            "Fire",
            "Dispatch",
            datetime(2023, 3, 4, 5, 6, 7),
        )
        tags = session.execute(
            select(CallTransmission.unit, CallTransmission.tag).where(CallTransmission.call_id == call.id)
        ).all()
        assert tags == [(4242, "Ladder 3"), (77, None)]
    assert run(capsys, ours, "rdio-scanner", "--db", str(path))["duplicates"] == 2


def test_rdio_scanner_v7(tmp_path, ours, capsys):
    path = tmp_path / "rdio-scanner-v7.db"
    conn = rdio_scanner_db(path, V7_SCHEMA)
    conn.execute("INSERT INTO systems (systemId, label, systemRef) VALUES (1, 'Metro', 11)")
    conn.execute("INSERT INTO tags (tagId, label) VALUES (3, 'Law Dispatch')")
    conn.execute('INSERT INTO "groups" (groupId, label) VALUES (5, "Police")')
    conn.execute(
        "INSERT INTO talkgroups (talkgroupId, label, name, systemId, tagId, talkgroupRef) VALUES (7, 'PD1', 'Police 1', 1, 3, 300)"
    )
    conn.execute(
        "INSERT INTO talkgroups (talkgroupId, label, name, systemId, tagId, talkgroupRef) VALUES (8, 'PD2', 'Police 2', 1, 3, 301)"
    )
    conn.execute("INSERT INTO talkgroupGroups (groupId, talkgroupId) VALUES (5, 7)")
    conn.execute("INSERT INTO units (label, systemId, unitRef) VALUES ('Car 54', 1, 5454)")
    conn.execute(
        "INSERT INTO calls (callId, audio, audioFilename, audioMime, systemId, talkgroupId, timestamp) VALUES (1, ?, 'x.wav', 'audio/wav', 1, 7, 1700000000123)",
        (wav(7),),
    )
    conn.execute("INSERT INTO callUnits (callId, offset, unitRef) VALUES (1, 0.0, 5454), (1, 3.2, 99)")
    conn.execute(
        "INSERT INTO callFrequencies (callId, frequency, offset, errors, spikes) VALUES (1, 460125000, 0, 2, 1)"
    )
    conn.execute("INSERT INTO callPatches (callId, talkgroupId) VALUES (1, 8)")
    conn.execute(  # a call whose talkgroup row is gone: no talkgroup id
        "INSERT INTO calls (callId, audio, audioFilename, audioMime, systemId, talkgroupId, timestamp) VALUES (2, ?, 'y.wav', 'audio/wav', 1, 99, 1700000100000)",
        (wav(8),),
    )
    conn.commit()
    conn.close()

    summary = run(capsys, ours, "rdio-scanner", "--db", str(path))
    assert (summary["imported"], summary["failed_by_reason"]) == (1, {"no talkgroup": 1})
    with factory(ours)() as session:
        (call,) = session.execute(select(Call)).scalars().all()
        assert (call.system_id, call.talkgroup, call.talkgroup_label, call.talkgroup_group) == (
            11,
            300,
            "PD1",
            "Police",
        )
        assert call.date_time == datetime(2023, 11, 14, 22, 13, 20, 123000)
        assert (call.frequency, call.patches) == (460125000, [301])
        assert session.execute(select(Unit.alias).where(Unit.unit == 5454)).scalar_one() == "Car 54"
        units = session.execute(
            select(CallTransmission.unit, CallTransmission.offset_seconds).order_by(CallTransmission.seq)
        ).all()
        assert units == [(5454, 0.0), (99, 3.2)]


def test_trunk_recorder_capture_tree(tmp_path, ours, capsys):
    root = tmp_path / "capture"
    tr_call(root, "county", tr_meta(100, 1714564800), wav(1))
    tr_call(
        root,
        "county",
        tr_meta(100, 1714564900, emergency=1),
        wav(2),
    )
    tr_call(root, "city", tr_meta(500, 1714565000, short_name="city"), wav(3))
    tr_call(root, "county", tr_meta(101, 1714565100), None)  # sidecar, audio gone
    (root / "county" / "stray.wav").write_bytes(wav(4))  # audio with no sidecar
    bad = tr_call(root, "county", tr_meta(102, 1714565200), wav(5))
    bad.with_suffix(".json").write_text("{not json")

    summary = run(
        capsys, ours, "trunk-recorder", str(root), "--system-map", "county=1", "--system-map", "city=2"
    )
    assert summary["imported"] == 3
    assert summary["failed_by_reason"] == {"audio file missing": 1, "no .json sidecar": 1, "bad sidecar": 1}
    with factory(ours)() as session:
        calls = session.execute(select(Call).order_by(Call.date_time)).scalars().all()
        assert [(c.system_id, c.talkgroup) for c in calls] == [(1, 100), (1, 100), (2, 500)]
        first = calls[0]
        assert (first.talkgroup_label, first.talkgroup_name, first.client_kind) == (
            "Fire Dispatch",
            "County Fire Dispatch",
            "trunk-recorder",
        )
        rows = session.execute(
            select(
                CallTransmission.unit,
                CallTransmission.tag,
                CallTransmission.emergency,
                CallTransmission.origin,
            )
            .where(CallTransmission.call_id == first.id)
            .order_by(CallTransmission.seq)
        ).all()
        assert rows == [(1234, "Engine 7", False, "srcList"), (5678, None, True, "srcList")]

    # Without a system id for a short name, its calls are reported, not guessed.
    other = run(capsys, ours, "trunk-recorder", str(root), "--system-map", "county=1")
    assert other["failed_by_reason"]["no system id"] == 1 and other["imported"] == 0


def test_bad_arguments_are_one_line_errors(tmp_path, ours, capsys):
    assert cli.main(["import", "rdio-scanner", "--config", str(ours), "--db", str(tmp_path / "none.db")]) == 2
    assert "no rdio-scanner database" in capsys.readouterr().err
    assert cli.main(["import", "sdrtrunk-rdio-api", "--config", str(ours)]) == 2
    assert (
        cli.main(["import", "trunk-recorder", "--config", str(ours), str(tmp_path), "--system-map", "x"]) == 2
    )


@pytest.mark.skipif(
    not os.environ.get("RDIO_TEST_DATABASE_URL"), reason="needs PostgreSQL (CI sets RDIO_TEST_DATABASE_URL)"
)
def test_rdio_scanner_v7_on_postgresql(tmp_path, ours, capsys):
    """rdio-scanner on PostgreSQL: ``--db postgresql://...``, the same v7 tables (audio as bytea)."""
    with own_database(tmp_path / "theirs") as url:
        engine = create_engine(url)
        pg_schema = V7_SCHEMA.replace("integer NOT NULL PRIMARY KEY AUTOINCREMENT", "serial PRIMARY KEY")
        pg_schema = pg_schema.replace('"audio" blob', '"audio" bytea').replace(
            '"timestamp" integer', '"timestamp" bigint'
        )
        with engine.begin() as conn:
            for statement in filter(str.strip, pg_schema.split(";")):
                conn.execute(text(statement))
            conn.execute(
                text("""INSERT INTO systems ("systemId", label, "systemRef") VALUES (1, 'Metro', 11)""")
            )
            conn.execute(text("""INSERT INTO tags ("tagId", label) VALUES (3, 'Law')"""))
            conn.execute(
                text(
                    """INSERT INTO talkgroups ("talkgroupId", label, name, "systemId", "tagId", "talkgroupRef")"""
                    """ VALUES (7, 'PD1', 'Police 1', 1, 3, 300)"""
                )
            )
            conn.execute(
                text(
                    """INSERT INTO calls ("callId", audio, "audioFilename", "audioMime", "systemId", "talkgroupId","""
                    """ timestamp) VALUES (1, :audio, 'x.wav', 'audio/wav', 1, 7, 1700000000000)"""
                ),
                {"audio": wav(70)},
            )
            conn.execute(
                text("""INSERT INTO "callUnits" ("callId", "offset", "unitRef") VALUES (1, 0.5, 4321)""")
            )
        engine.dispose()
        summary = run(capsys, ours, "rdio-scanner", "--db", url)
    assert summary["imported"] == 1 and summary["failed"] == 0
    with factory(ours)() as session:
        (call,) = session.execute(select(Call)).scalars().all()
        assert (call.system_id, call.talkgroup, call.talkgroup_tag, call.source) == (11, 300, "Law", 4321)


def test_with_a_broker_jobs_are_published_and_tone_analysis_is_fed(tmp_path, ours, capsys):
    """``broker_url`` set: --transcribe jobs reach the gpu queue (and are marked queued), and the
    tone analysis of each imported call reaches the tones queue."""
    import redis as redis_client

    from rdio_core.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        ours.write_text(ours.read_text() + f"broker_url: {server.url}\n")
        sdrtrunk_archive(tmp_path / "theirs", [sdr_row(1), sdr_row(9, talkgroup_id=300)])
        argv = ["--config", str(ours), "--db", str(tmp_path / "theirs/data/rdio_calls.db"), "--transcribe"]
        assert cli.main(["import", "sdrtrunk-rdio-api", *argv]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out.splitlines()[-1])["imported"] == 2
        assert "tone analysis: 2 calls sent to the tones queue" in err
        with factory(ours)() as session:
            statuses = session.execute(select(TranscriptionJob.status)).scalars().all()
        assert statuses == ["queued", "queued"]
        client = redis_client.Redis.from_url(server.url)
        queued = {k.decode(): client.llen(k) for k in client.keys("*") if client.type(k) == b"list"}
        assert sum(n for name, n in queued.items() if name.startswith("tones")) == 2, queued
        assert sum(n for name, n in queued.items() if name.startswith("gpu")) == 2, queued
    finally:
        server.stop()


def test_naive_times_read_in_the_zone_given():
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from rdio_api.importers.times import epoch_text

    chicago = ZoneInfo("America/Chicago")
    assert epoch_text("2024-07-01 12:00:00", UTC) == "1719835200.000000"
    assert epoch_text("2024-07-01 12:00:00", chicago) == "1719853200.000000"  # CDT, UTC-5
    assert epoch_text("2024-07-01T12:00:00+00:00", chicago) == "1719835200.000000"  # aware: as written
    assert epoch_text(1719835200123, UTC) == "1719835200.123000"  # rdio-scanner v7: milliseconds
    assert epoch_text("2024-07-01 07:00:00.5 -0500 CDT", UTC) == "1719835200.500000"  # Go's time.String()
    assert epoch_text("yesterday", UTC) is None and epoch_text(None, UTC) is None


def test_keys_go_into_an_empty_inline_list_and_a_file_without_one(tmp_path):
    from rdio_api.importers.keys import add_keys

    entry = {"key": "k-123456789", "name": "node", "scopes": ["upload"]}
    inline = tmp_path / "inline.yaml"
    inline.write_text("# keep me\napi_keys: []  # none yet\nlog_level: INFO\n")
    assert add_keys(inline, [entry]) == [entry]
    assert yaml.safe_load(inline.read_text()) == {"api_keys": [entry], "log_level": "INFO"}
    assert inline.read_text().startswith("# keep me\n")
    assert add_keys(inline, [entry]) == []

    bare = tmp_path / "bare.yaml"
    bare.write_text("log_level: INFO")
    add_keys(bare, [entry])
    assert yaml.safe_load(bare.read_text()) == {"log_level": "INFO", "api_keys": [entry]}
    assert (tmp_path / "bare.yaml.bak").read_text() == "log_level: INFO"


def test_link_hard_links_the_audio_instead_of_copying(tmp_path, ours, capsys):
    root = tmp_path / "capture"
    stem = tr_call(root, "county", tr_meta(100, 1714564800), wav(11))
    summary = run(capsys, ours, "trunk-recorder", str(root), "--system", "1", "--link")
    assert summary["imported"] == 1
    with factory(ours)() as session:
        relative = session.execute(select(Call.audio_path)).scalar_one()
    stored = Path(yaml.safe_load(ours.read_text())["data_dir"]) / "audio" / relative
    assert stored.stat().st_ino == stem.with_suffix(".wav").stat().st_ino
    assert stored.read_bytes() == wav(11)
