"""The Rdio Scanner upload contract against a real Hypercorn server, byte for byte."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from rdio_core.models import Call, System, Talkgroup
from tests.conftest import DISABLED_KEY, IP_KEY, MAX_UPLOAD, RATE_KEY, SCOPED_KEY, UPLOAD_KEY
from tests.helpers import SDRTRUNK_BOUNDARY, clip, raw_request, sdrtrunk_body

_systems = itertools.count(int(time.time()) % 100000 * 10 + 1000)

SUCCESS = "Call imported successfully."


def fresh_system() -> int:
    """A system id no other test uses, so tests never see each other's rows."""
    return next(_systems)


def sdrtrunk_fields(
    system: int,
    talkgroup: int = 52198,
    key: str = UPLOAD_KEY,
    when: int | None = None,
    source: int = 1610123,
    **extra: str,
) -> list[tuple[str, str]]:
    fields = [
        ("key", key),
        ("system", str(system)),
        ("dateTime", str(when or int(time.time()))),
        ("talkgroup", str(talkgroup)),
        ("source", str(source)),
        ("frequency", "851012500"),
        ("talkgroupLabel", "FD Dispatch"),
        ("talkgroupGroup", "null"),
        ("systemLabel", "County P25"),
        ("patches", "[]"),
        ("talkerAlias", "E12"),
    ]
    fields += list(extra.items())
    return fields


def calls_for(db_engine, system: int) -> list[Call]:
    with db_engine.connect() as conn:
        return list(conn.execute(select(Call).where(Call.system_id == system).order_by(Call.id)).all())


def audio_files(server) -> list[Path]:
    root = Path(server.config["data_dir"]) / "audio"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def post(
    server,
    fields,
    audio: bytes | None = None,
    filename: str = "call.mp3",
    path: str = "/api/call-upload",
    headers: dict | None = None,
) -> httpx.Response:
    files = {"audio": (filename, audio, "application/octet-stream")} if audio is not None else None
    return httpx.post(f"{server.url}{path}", data=dict(fields), files=files, headers=headers, timeout=10)


# -- SDRTrunk exact bytes ---------------------------------------------------------------------------


def test_sdrtrunk_upload_with_h2c_upgrade_headers_and_body(server, db_engine):
    system = fresh_system()
    audio = clip("speech_sdrtrunk.mp3")
    status, headers, body = raw_request(server.port, sdrtrunk_body(sdrtrunk_fields(system), audio))
    assert status.startswith("HTTP/1.1 200"), (status, body)
    assert SUCCESS in body.decode()
    call_id = int(headers["x-call-id"])

    rows = calls_for(db_engine, system)
    assert [r.id for r in rows] == [call_id]
    row = rows[0]
    assert row.talkgroup == 52198 and row.source == 1610123 and row.frequency == 851012500
    assert row.talkgroup_label == "FD Dispatch" and row.talkgroup_group is None  # "null" -> NULL
    assert row.system_label == "County P25" and row.talker_alias == "E12"
    assert row.client_kind == "sdrtrunk" and row.key_name == "county sdrtrunk"
    assert row.audio_name == "20260103_003124.796.mp3" and row.audio_mime == "audio/mpeg"
    assert row.audio_sha256 == hashlib.sha256(audio).hexdigest() and row.audio_bytes == len(audio)
    assert row.duration_seconds == pytest.approx(2.9, abs=0.3)
    stored = Path(server.config["data_dir"]) / "audio" / row.audio_path
    assert stored.read_bytes() == audio
    assert row.audio_path.split("/")[3:5] == [str(system), "52198"]


@pytest.mark.parametrize(
    ("disposition", "extra"),
    [
        ('form-data; name="audio"', ""),  # oldest builds: no filename
        ('form-data; filename ="20260103_003124.796.mp3"; name="audio"', ""),  # space before '='
        (
            'form-data; filename="x.mp3"; name="audio"',
            "Content-Type: audio/mpeg\r\nContent-Type: audio/mpeg\r\n",
        ),
    ],
    ids=["no-filename", "filename-space", "duplicate-content-type"],
)
def test_older_sdrtrunk_multipart_variants(server, db_engine, disposition, extra):
    system = fresh_system()
    body = sdrtrunk_body(
        sdrtrunk_fields(system),
        clip("speech_sdrtrunk.mp3"),
        disposition=disposition,
        extra_audio_headers=extra,
    )
    status, _, text = raw_request(server.port, body)
    assert status.startswith("HTTP/1.1 200") and SUCCESS in text.decode()
    assert len(calls_for(db_engine, system)) == 1


def test_connection_test_good_key_passes_sdrtrunk_check(server):
    body = sdrtrunk_body([("key", UPLOAD_KEY), ("system", "11"), ("test", "1")], None)
    status, _, text = raw_request(server.port, body)
    assert status.startswith("HTTP/1.1 417")
    assert text.decode().startswith("Incomplete call data: no talkgroup")


def test_connection_test_bad_key_is_401(server):
    body = sdrtrunk_body([("key", "wrong"), ("system", "11"), ("test", "1")], None)
    status, _, text = raw_request(server.port, body)
    assert status.startswith("HTTP/1.1 401") and text.decode() == "Invalid API key"


def test_connection_test_key_not_for_system(server):
    body = sdrtrunk_body([("key", SCOPED_KEY), ("system", "99"), ("test", "1")], None)
    status, _, text = raw_request(server.port, body)
    assert status.startswith("HTTP/1.1 401") and "system 99" in text.decode()


def test_json_answer_only_when_asked(server):
    system = fresh_system()
    r = post(
        server, sdrtrunk_fields(system), clip("speech_sdrtrunk.mp3"), headers={"Accept": "application/json"}
    )
    assert r.status_code == 200
    assert r.json() == {"id": int(r.headers["x-call-id"]), "message": SUCCESS}
    r2 = post(server, sdrtrunk_fields(system, talkgroup=7), clip("speech_sdrtrunk.mp3"))
    assert r2.headers["content-type"].startswith("text/plain") and r2.text == SUCCESS


def test_http2_prior_knowledge(server, db_engine):
    system = fresh_system()
    with httpx.Client(http1=False, http2=True) as client:
        r = client.post(
            f"{server.url}/api/call-upload",
            data=dict(sdrtrunk_fields(system)),
            files={"audio": ("a.mp3", clip("speech_sdrtrunk.mp3"))},
        )
    assert r.http_version == "HTTP/2" and r.status_code == 200 and r.text == SUCCESS
    assert len(calls_for(db_engine, system)) == 1


# -- trunk-recorder ----------------------------------------------------------------------------------


def trunk_recorder_meta(talkgroup: int, start: int) -> dict:
    return {
        "freq": 851262500,
        "start_time": start,
        "stop_time": start + 3,
        "emergency": 0,
        "talkgroup": talkgroup,
        "talkgroup_tag": "Fire Disp",
        "talkgroup_description": "Fire Dispatch Main",
        "talkgroup_group": "Fire",
        "talkgroup_group_tag": "Fire-Tac",
        "audio_type": "digital",
        "short_name": "county",
        "patched_talkgroups": [talkgroup, 9101],
        "freqList": [
            {"freq": 851262500, "time": start, "pos": 0.0, "len": 3.0, "error_count": 0, "spike_count": 0}
        ],
        "srcList": [
            {"src": 4201234, "time": start, "pos": 0.0, "emergency": 0, "signal_system": "", "tag": ""}
        ],
    }


def test_trunk_recorder_m4a_with_meta(server, db_engine):
    system = fresh_system()
    start = int(time.time()) - 30
    meta = json.dumps(trunk_recorder_meta(3101, start))
    audio = clip("speech.m4a")
    r = httpx.post(
        f"{server.url}/api/trunk-recorder-call-upload",
        data={"key": UPLOAD_KEY, "system": str(system)},
        files={
            "audio": ("3101-1700000000_851262500.m4a", audio, "application/octet-stream"),
            "meta": ("3101-1700000000_851262500.json", meta.encode(), "application/json"),
        },
        headers={"User-Agent": "TrunkRecorder1.0"},
        timeout=10,
    )
    assert r.status_code == 200 and r.text == SUCCESS
    (row,) = calls_for(db_engine, system)
    assert row.talkgroup == 3101 and row.source == 4201234 and row.frequency == 851262500
    assert row.talkgroup_label == "Fire Disp" and row.talkgroup_name == "Fire Dispatch Main"
    assert row.talkgroup_group == "Fire" and row.talkgroup_tag == "Fire-Tac" and row.patches == [3101, 9101]
    assert row.frequencies[0]["freq"] == 851262500 and row.sources[0]["src"] == 4201234
    assert row.audio_mime == "audio/mp4" and row.client_kind == "trunk-recorder"
    assert row.duration_seconds == pytest.approx(2.9, abs=0.3)
    assert row.date_time.timestamp() == pytest.approx(start, abs=1) or row.date_time.year >= 2024
    assert row.meta["trunk_recorder"]["short_name"] == "county"


def test_trunk_recorder_style_fields_on_call_upload(server, db_engine):
    """trunk-recorder's rdioscanner plugin posts to /api/call-upload with JSON arrays."""
    system = fresh_system()
    fields = [
        ("key", UPLOAD_KEY),
        ("system", str(system)),
        ("dateTime", str(int(time.time()))),
        ("talkgroup", "4005"),
        ("frequency", "0"),
        ("source", "0"),
        ("frequencies", json.dumps([{"freq": 852000000, "time": 1, "pos": 0}])),
        ("sources", json.dumps([{"src": 777, "time": 1, "pos": 0}])),
        ("patches", "[60001,101,102]"),
        ("talkgroupTag", "Law Dispatch"),
    ]
    r = post(server, fields, clip("speech.wav"), filename="x.wav")
    assert r.status_code == 200
    (row,) = calls_for(db_engine, system)
    assert row.frequency is None and row.source == 777 and row.patches == [60001, 101, 102]
    assert row.talkgroup_tag == "Law Dispatch" and row.audio_mime == "audio/wav"


@pytest.mark.parametrize("name", ["speech.wav", "speech.flac", "speech.opus", "speech.m4a"])
def test_every_audio_format_gets_a_real_duration(server, db_engine, name):
    system = fresh_system()
    r = post(server, sdrtrunk_fields(system), clip(name), filename="x.bin")
    assert r.status_code == 200, r.text
    (row,) = calls_for(db_engine, system)
    assert row.duration_seconds == pytest.approx(2.92, abs=0.25)


# -- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "message"),
    [("dateTime", "no dateTime"), ("system", "no system"), ("talkgroup", "no talkgroup")],
)
def test_missing_required_fields(server, drop, message):
    fields = [(k, v) for k, v in sdrtrunk_fields(fresh_system()) if k != drop]
    r = post(server, fields, clip("speech_sdrtrunk.mp3"))
    assert r.status_code == 417 and r.text == f"Incomplete call data: {message}"


def test_missing_and_empty_audio(server, db_engine):
    system = fresh_system()
    r = post(server, sdrtrunk_fields(system))
    assert r.status_code == 417 and r.text == "Incomplete call data: no audio"
    status, _, body = raw_request(server.port, sdrtrunk_body(sdrtrunk_fields(system), b""))
    assert status.startswith("HTTP/1.1 417") and body.decode() == "Incomplete call data: no audio"
    assert calls_for(db_engine, system) == []


def test_key_scopes_by_system_and_talkgroup(server, db_engine):
    audio = clip("speech_sdrtrunk.mp3")
    ok = post(server, sdrtrunk_fields(12, talkgroup=100, key=SCOPED_KEY, source=fresh_system()), audio)
    assert ok.status_code == 200
    r = post(server, sdrtrunk_fields(12, talkgroup=555, key=SCOPED_KEY), audio)
    assert r.status_code == 401 and r.text == "Invalid API key for system 12 talkgroup 555."
    r = post(server, sdrtrunk_fields(13, talkgroup=100, key=SCOPED_KEY), audio)
    assert r.status_code == 401 and r.text == "Invalid API key for system 13 talkgroup 100."


def test_ip_allow_list_and_disabled_key(server):
    audio = clip("speech_sdrtrunk.mp3")
    r = post(server, sdrtrunk_fields(fresh_system(), key=IP_KEY), audio)
    assert r.status_code == 401 and r.text.startswith("Invalid API key") and "127.0.0.1" in r.text
    r = post(server, sdrtrunk_fields(fresh_system(), key=DISABLED_KEY), audio)
    assert r.status_code == 401 and r.text == "Invalid API key"


def test_not_multipart_is_400(server):
    r = httpx.post(
        f"{server.url}/api/call-upload", content=b'{"key": "x"}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "multipart/form-data" in r.text
    r = httpx.post(
        f"{server.url}/api/call-upload", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert r.status_code == 400 and "boundary" in r.text


def test_truncated_multipart_is_400_and_stores_nothing(server, db_engine):
    system = fresh_system()
    before = audio_files(server)
    body = sdrtrunk_body(sdrtrunk_fields(system), clip("speech_sdrtrunk.mp3"))
    truncated = body[: len(body) - 200]
    status, _, text = raw_request(server.port, truncated)
    assert status.startswith("HTTP/1.1 400") and "truncated" in text.decode()
    assert calls_for(db_engine, system) == [] and audio_files(server) == before


def test_body_shorter_than_content_length_is_not_a_500(server, db_engine):
    system = fresh_system()
    body = sdrtrunk_body(sdrtrunk_fields(system), clip("speech_sdrtrunk.mp3"))
    status, _, _ = raw_request(server.port, body[:500], content_length=len(body))
    assert not status.startswith("HTTP/1.1 5")
    assert calls_for(db_engine, system) == []


def test_oversize_upload_is_413(server, db_engine):
    system = fresh_system()
    big = clip("speech_sdrtrunk.mp3") * (MAX_UPLOAD // 6000 + 5)
    r = post(server, sdrtrunk_fields(system), big)
    assert r.status_code == 413 and "limit" in r.text
    assert calls_for(db_engine, system) == []


def test_non_audio_named_mp3_is_415_and_leaves_nothing(server, db_engine):
    system = fresh_system()
    before = audio_files(server)
    r = post(server, sdrtrunk_fields(system), clip("not_audio.mp3"), filename="call.mp3")
    assert r.status_code == 415 and r.text.startswith("Unsupported audio")
    assert calls_for(db_engine, system) == [] and audio_files(server) == before


def test_path_traversal_filename_never_reaches_the_filesystem(server, db_engine):
    system = fresh_system()
    r = post(server, sdrtrunk_fields(system), clip("speech_sdrtrunk.mp3"), filename="../../etc/passwd.mp3")
    assert r.status_code == 200
    (row,) = calls_for(db_engine, system)
    root = (Path(server.config["data_dir"]) / "audio").resolve()
    stored = (root / row.audio_path).resolve()
    assert stored.is_file() and stored.is_relative_to(root)
    assert "passwd" not in row.audio_path and ".." not in row.audio_path
    assert row.audio_name == "../../etc/passwd.mp3"  # kept as metadata only


def test_rate_limit_is_429_with_clear_text(server):
    audio = clip("speech_sdrtrunk.mp3")
    codes = [post(server, sdrtrunk_fields(fresh_system(), key=RATE_KEY), audio) for _ in range(4)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    assert codes[3].status_code == 429 and "3 per minute" in codes[3].text


def test_duplicates_from_two_recorders(server, db_engine):
    system = fresh_system()
    when = int(time.time())
    audio = clip("speech_sdrtrunk.mp3")
    first = post(server, sdrtrunk_fields(system, when=when, source=501), audio)
    assert first.status_code == 200 and first.text == SUCCESS
    files_after_first = audio_files(server)
    # Another site heard the same call: same source, start 1 s later, different audio encoding.
    dup = post(server, sdrtrunk_fields(system, when=when + 1, source=501), clip("speech.wav"))
    assert dup.status_code == 200 and dup.text == "duplicate call rejected"
    # Same audio bytes, source unknown at the second recorder.
    dup2 = post(server, sdrtrunk_fields(system, when=when, source=0), audio)
    assert dup2.text == "duplicate call rejected"
    assert audio_files(server) == files_after_first
    # Outside the window, or another unit talking: a new call.
    later = post(server, sdrtrunk_fields(system, when=when + 10, source=501), audio)
    other = post(server, sdrtrunk_fields(system, when=when, source=502), clip("speech.wav"))
    assert later.text == SUCCESS and other.text == SUCCESS
    assert len(calls_for(db_engine, system)) == 3


def test_concurrent_duplicate_burst_stores_one_call(server, db_engine):
    system = fresh_system()
    when = int(time.time())
    audio = clip("speech_sdrtrunk.mp3")

    import asyncio

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        f"{server.url}/api/call-upload",
                        data=dict(sdrtrunk_fields(system, when=when, source=9)),
                        files={"audio": ("a.mp3", audio)},
                    )
                    for _ in range(8)
                ]
            )

    responses = asyncio.run(burst())
    texts = sorted(r.text for r in responses)
    assert texts.count(SUCCESS) == 1 and texts.count("duplicate call rejected") == 7
    assert len(calls_for(db_engine, system)) == 1


def test_labels_are_learned(server, db_engine):
    system = fresh_system()
    post(server, sdrtrunk_fields(system, talkgroup=42), clip("speech_sdrtrunk.mp3"))
    post(
        server,
        sdrtrunk_fields(system, talkgroup=42, when=int(time.time()) + 30, source=2, talkgroupLabel="Renamed"),
        clip("speech_sdrtrunk.mp3"),
    )
    with db_engine.connect() as conn:
        sys_row = conn.execute(select(System).where(System.id == system)).one()
        tg = conn.execute(select(Talkgroup).where(Talkgroup.system_id == system)).one()
        n = conn.execute(
            select(func.count()).select_from(Talkgroup).where(Talkgroup.system_id == system)
        ).scalar()
    assert sys_row.label == "County P25" and tg.label == "Renamed" and n == 1


def test_rfc3339_and_millisecond_timestamps(server, db_engine):
    system = fresh_system()
    fields = [(k, v) for k, v in sdrtrunk_fields(system) if k != "dateTime"]
    r = post(server, [*fields, ("dateTime", "2026-01-03T00:31:24Z")], clip("speech_sdrtrunk.mp3"))
    assert r.status_code == 200
    r = post(server, [*fields, ("timestamp", "1767400000123")], clip("speech.wav"))
    assert r.status_code == 200
    stamps = sorted(row.date_time.isoformat() for row in calls_for(db_engine, system))
    assert stamps == ["2026-01-03T00:26:40.123000", "2026-01-03T00:31:24"]


def test_date_time_units_and_clock_skew(server, db_engine):
    """Issue 25, item 3: numbers of 13 digits or more are milliseconds, shorter ones seconds; a time
    more than upload.max_future_skew_seconds (24 h) ahead of the server's clock is stored at the time
    received and the sent value noted on the call, on both upload routes. Before: a 12-digit value
    was read as milliseconds (1978) and a time five years ahead was stored as sent."""
    now = time.time()
    five_years = 5 * 365 * 86400
    fields = [(k, v) for k, v in sdrtrunk_fields(fresh_system()) if k != "dateTime"]

    # 12 digits: seconds after the year 5138, milliseconds before 2001: neither, and said so.
    r = post(server, [*fields, ("dateTime", str(int(now * 100)))], clip("speech.wav"))
    assert r.status_code == 417 and r.text.startswith("Incomplete call data: no dateTime"), r.text
    assert "13 digits" in r.text

    ahead = str(int(now) + five_years)
    cases = [  # (system, dateTime sent, the time stored, whether the call carries a note)
        (fresh_system(), str(int(now * 1000)), now, False),  # 13 digits: milliseconds
        (fresh_system(), str(int(now) + 3600), now + 3600, False),  # an hour ahead: within the skew
        (fresh_system(), str(int(now) - 30 * 86400), now - 30 * 86400, False),  # a late upload: kept
        (fresh_system(), ahead, now, True),  # five years ahead: the time received, and a note
    ]
    for system, sent, _, _ in cases:
        sent_fields = [(k, sent if k == "dateTime" else v) for k, v in sdrtrunk_fields(system)]
        r = post(server, sent_fields, clip("speech.wav"))
        assert r.status_code == 200 and r.text == SUCCESS, r.text
    for system, sent, expected, noted in cases:
        (row,) = calls_for(db_engine, system)
        assert row.date_time.replace(tzinfo=UTC).timestamp() == pytest.approx(expected, abs=5), sent
        note = (row.meta or {}).get("ignored_fields", {}).get("dateTime")
        assert (note is not None) == noted, (sent, row.meta)
        assert note is None or (ahead in note and "ahead of the server clock" in note), note

    # trunk-recorder: the same rule on its meta's start_time.
    system = fresh_system()
    r = httpx.post(
        f"{server.url}/api/trunk-recorder-call-upload",
        data={"key": UPLOAD_KEY, "system": str(system)},
        files={
            "audio": ("call.m4a", clip("speech.m4a"), "application/octet-stream"),
            "meta": ("call.json", json.dumps(trunk_recorder_meta(3101, int(now) + five_years)).encode()),
        },
        timeout=10,
    )
    assert r.status_code == 200 and r.text == SUCCESS, r.text
    (row,) = calls_for(db_engine, system)
    assert row.date_time.replace(tzinfo=UTC).timestamp() == pytest.approx(now, abs=5)
    assert "ahead of the server clock" in row.meta["ignored_fields"]["dateTime"]


def test_boundary_is_what_sdrtrunk_sends():
    # Guard against the helper drifting from SDRTrunk's real framing.
    body = sdrtrunk_body([("key", "k")], b"AB")
    assert body.startswith(b"----sdrtrunk-sdrtrunk-sdrtrunk\r\n")
    assert (
        b'Content-Disposition: form-data; filename="20260103_003124.796.mp3"; name="audio"\r\n\r\nAB' in body
    )
    assert SDRTRUNK_BOUNDARY == "--sdrtrunk-sdrtrunk-sdrtrunk"
