"""Units: transmissions stored from SDRTrunk's source/talkerAlias and trunk-recorder's srcList, the
units table with learned and configured aliases, ``unit:`` search, key grants, transcript segments
attributed to the radio on air (a real worker), and the migration that fills all of it for old calls."""

from __future__ import annotations

import io
import json
import time
import wave
from datetime import datetime

import httpx
import numpy as np
import pytest
import yaml
from sqlalchemy import select, text

from rdio_core import db, search
from rdio_core.models import CallTransmission, Unit
from rdio_core.units import Named, attribute, parse_transmissions
from tests.conftest import READ_KEY, SCOPED_KEY, UPLOAD_KEY, base_config
from tests.helpers import REPO, ServerProcess, clip, raw_request, sdrtrunk_body
from tests.stack import ADMIN
from tests.test_upload import fresh_system, sdrtrunk_fields

# Systems and radio ids no other test uses; the configured aliases are written before the server starts.
SYS_A, SYS_B = fresh_system(), fresh_system()
CONFIGURED = fresh_system()  # a radio of SYS_A with an alias in units:
NEVER_HEARD = fresh_system()  # configured, never transmits


@pytest.fixture(scope="module")
def units_server(tmp_path_factory, database_url):
    work = tmp_path_factory.mktemp("units")
    config = base_config(
        work / "data",
        database_url,
        units={
            "systems": [
                {"id": SYS_A, "aliases": {str(CONFIGURED): "Engine 7", str(NEVER_HEARD): "Reserve 2"}},
            ]
        },
    )
    proc = ServerProcess(work, config).start()
    yield proc
    proc.stop()


def sdrtrunk(server, system: int, source: int, alias: str | None, talkgroup: int | None = None) -> int:
    """An SDRTrunk upload (same audio every time: each on its own talkgroup unless told, so that
    the duplicate check does not take it for the one before)."""
    talkgroup = talkgroup or fresh_system()
    fields = [
        (k, v) for k, v in sdrtrunk_fields(system, talkgroup=talkgroup, source=source) if k != "talkerAlias"
    ]
    if alias is not None:
        fields.append(("talkerAlias", alias))
    status, headers, body = raw_request(server.port, sdrtrunk_body(fields, clip("speech_sdrtrunk.mp3")))
    assert status.startswith("HTTP/1.1 200"), (status, body)
    return int(headers["x-call-id"])


def trunk_recorder(server, system: int, talkgroup: int, src_list: list, audio: bytes | None = None) -> int:
    start = int(time.time()) - 60
    meta = {"start_time": start, "talkgroup": talkgroup, "short_name": "county", "srcList": src_list}
    r = httpx.post(
        f"{server.url}/api/trunk-recorder-call-upload",
        data={"key": UPLOAD_KEY if audio is None else ADMIN, "system": str(system)},
        files={
            "audio": ("call.wav", audio or clip("speech.wav"), "application/octet-stream"),
            "meta": ("call.json", json.dumps(meta).encode(), "application/json"),
        },
        headers={"User-Agent": "TrunkRecorder1.0", "Accept": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["id"]


def get(server, path: str, key: str = READ_KEY, **params) -> dict:
    r = httpx.get(f"{server.url}{path}", params=params, headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def units_of(server, key: str = READ_KEY, **params) -> dict[tuple[int, int], dict]:
    return {
        (u["system"], u["unit"]): u for u in get(server, "/api/units", key, limit=2000, **params)["units"]
    }


# -- what uploads store ---------------------------------------------------------------------------


def test_sdrtrunk_source_and_talker_alias(units_server):
    radio = fresh_system()
    call_id = sdrtrunk(units_server, SYS_A, radio, "BAT 3")
    call = get(units_server, f"/api/calls/{call_id}")
    (tx,) = call["transmissions"]
    assert tx["unit"] == radio and tx["tag"] == "BAT 3" and tx["origin"] == "source"
    assert tx["offset_seconds"] == 0 and tx["duration_seconds"] == pytest.approx(call["duration_seconds"])
    assert tx["alias"] == "BAT 3" and tx["alias_source"] == "learned" and tx["emergency"] is False
    assert call["units"] == [{"unit": radio, "alias": "BAT 3", "emergency": False}]
    unit = units_of(units_server, system=SYS_A)[(SYS_A, radio)]
    assert unit["learned_alias"] == "BAT 3" and unit["last_seen_at"] is not None

    # P25 talker alias comes only now and then: a call without one shows the alias learned before.
    later = sdrtrunk(units_server, SYS_A, radio, None, talkgroup=101)
    listed = get(units_server, "/api/calls", system=SYS_A, talkgroup=101)["calls"]
    assert [c["units"] for c in listed if c["id"] == later] == [
        [{"unit": radio, "alias": "BAT 3", "emergency": False}]
    ]


def test_trunk_recorder_src_list_several_units_and_emergency(units_server, db_engine):
    a, b = fresh_system(), fresh_system()
    src_list = [
        {"src": a, "pos": 0.0, "time": 1, "emergency": 0, "signal_system": "", "tag": "Medic 4"},
        {"src": b, "pos": 1.25, "time": 2, "emergency": 1, "signal_system": "", "tag": ""},
        {"src": -1, "pos": 2.0, "time": 3, "emergency": 0, "signal_system": "", "tag": ""},  # unknown radio
        {"src": a, "pos": "soon", "tag": "x"},  # unreadable: skipped with a log line, call kept
    ]
    call_id = trunk_recorder(units_server, SYS_A, 3101, src_list)
    call = get(units_server, f"/api/calls/{call_id}")
    txs = [
        (t["unit"], t["offset_seconds"], t["tag"], t["emergency"], t["origin"]) for t in call["transmissions"]
    ]
    assert txs == [
        (a, 0.0, "Medic 4", False, "srcList"),
        (b, 1.25, None, True, "srcList"),
        (None, 2.0, None, False, "srcList"),
    ]
    assert [t["duration_seconds"] for t in call["transmissions"][:2]] == [1.25, 0.75]
    assert call["units"] == [
        {"unit": a, "alias": "Medic 4", "emergency": False},
        {"unit": b, "alias": None, "emergency": True},
    ]
    assert "transmissions skipped" in units_server.log() and f"call {call_id}" in units_server.log()
    with db_engine.connect() as conn:
        stored = conn.execute(select(CallTransmission.seq).where(CallTransmission.call_id == call_id)).all()
    assert len(stored) == 3


def test_configured_alias_wins_over_learned(units_server):
    call_id = sdrtrunk(units_server, SYS_A, CONFIGURED, "old portable")
    (tx,) = get(units_server, f"/api/calls/{call_id}")["transmissions"]
    assert (tx["alias"], tx["alias_source"], tx["tag"]) == ("Engine 7", "config", "old portable")
    listed = units_of(units_server, system=SYS_A)
    assert listed[(SYS_A, CONFIGURED)]["alias"] == "Engine 7"
    assert listed[(SYS_A, CONFIGURED)]["learned_alias"] == "old portable"
    # A configured radio not heard yet is listed too, never seen.
    assert listed[(SYS_A, NEVER_HEARD)]["alias"] == "Reserve 2"
    assert listed[(SYS_A, NEVER_HEARD)]["last_seen_at"] is None


def test_config_reload_renames_a_radio_on_old_calls(units_server):
    radio = fresh_system()
    call_id = sdrtrunk(units_server, SYS_B, radio, "T-1")
    config = yaml.safe_load(units_server.config_path.read_text())
    config["units"]["systems"].append({"id": SYS_B, "aliases": {str(radio): "Tower 1"}})
    units_server.config_path.write_text(yaml.safe_dump(config))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (tx,) = get(units_server, f"/api/calls/{call_id}")["transmissions"]
        if tx["alias"] == "Tower 1":
            break
        time.sleep(0.3)
    assert tx["alias"] == "Tower 1" and tx["alias_source"] == "config", units_server.log()[-2000:]


@pytest.mark.parametrize(
    ("sources", "heard"),
    [
        ('{"src": 1}', []),  # not a list
        ("[-5, 0]", []),  # not radio ids
        ('["x", null, [1]]', []),
        # The entry's time is unreadable, but the call's source is still its radio (call_fields).
        ('[{"pos": -3, "src": 5}]', [5]),
    ],
)
def test_bad_sources_never_refuse_a_call(units_server, sources, heard):
    fields = [*sdrtrunk_fields(fresh_system(), source=0), ("sources", sources)]
    status, headers, body = raw_request(units_server.port, sdrtrunk_body(fields, clip("speech_sdrtrunk.mp3")))
    assert status.startswith("HTTP/1.1 200"), (sources, body)
    call = get(units_server, f"/api/calls/{headers['x-call-id']}")
    assert [t["unit"] for t in call["transmissions"]] == heard
    assert [u["unit"] for u in call["units"]] == heard


# -- search and grants ----------------------------------------------------------------------------


def test_unit_search_and_filter(units_server):
    a, b = fresh_system(), fresh_system()
    first = trunk_recorder(
        units_server, SYS_B, 4001, [{"src": a, "pos": 0}, {"src": b, "pos": 1, "tag": "Ladder 9"}]
    )
    second = sdrtrunk(units_server, SYS_B, a, None, talkgroup=4002)
    assert {r["call"]["id"] for r in get(units_server, "/api/search", q=f"unit:{a}")["results"]} == {
        first,
        second,
    }
    assert [r["call"]["id"] for r in get(units_server, "/api/search", q=f"UNIT:{b}")["results"]] == [first]
    # unit: with words: both must hold; the srcList tag is in the text index too.
    assert [r["call"]["id"] for r in get(units_server, "/api/search", q=f"unit:{a} ladder")["results"]] == [
        first
    ]
    assert [r["call"]["id"] for r in get(units_server, "/api/search", q=f"unit:{a} unit:{b}")["results"]] == [
        first
    ]
    assert first in [r["call"]["id"] for r in get(units_server, "/api/search", q=str(b))["results"]]
    assert {c["id"] for c in get(units_server, "/api/calls", unit=a)["calls"]} == {first, second}
    r = httpx.get(f"{units_server.url}/api/search", params={"q": "unit:abc"}, headers={"X-API-Key": READ_KEY})
    assert r.status_code == 400 and "radio id" in r.json()["detail"]


def test_parse_query_unit_terms():
    parsed = search.parse_query('unit:1234 "unit:5 here" engine')
    assert parsed.units == [1234]
    assert [c.tokens for c in parsed.clauses] == [("unit", "5", "here"), ("engine",)]
    assert search.parse_query("unit:7").clauses == []
    for bad in ("unit:", "unit:-1", "unit:12x", "unit:99999999999999999999"):
        with pytest.raises(search.QueryError):
            search.parse_query(bad)


def test_a_key_sees_only_units_of_its_grants(units_server):
    """SCOPED_KEY: all of system 11, talkgroups 100 and 101 of system 12, nothing of other systems."""
    heard_there, heard_elsewhere, other_system = fresh_system(), fresh_system(), fresh_system()
    sdrtrunk(units_server, 12, heard_there, "Visible", talkgroup=100)
    sdrtrunk(units_server, 12, heard_elsewhere, "Hidden", talkgroup=555)
    sdrtrunk(units_server, SYS_B, other_system, "Elsewhere")
    scoped = units_of(units_server, SCOPED_KEY)
    assert (12, heard_there) in scoped and scoped[(12, heard_there)]["learned_alias"] == "Visible"
    assert (12, heard_elsewhere) not in scoped and not any(s == SYS_B for s, _ in scoped)
    assert not any(s == SYS_A for s, _ in scoped)  # configured aliases of a system it may not read
    everyone = units_of(units_server)
    assert {(12, heard_elsewhere), (SYS_B, other_system)} <= set(everyone)
    found = get(units_server, "/api/search", SCOPED_KEY, q=f"unit:{heard_elsewhere}")["results"]
    assert found == []


def test_units_pages_and_cursor(units_server):
    system = fresh_system()
    radios = sorted(fresh_system() for _ in range(5))
    trunk_recorder(units_server, system, 77, [{"src": r, "pos": i} for i, r in enumerate(radios)])
    seen, cursor = [], None
    while True:
        params = {"system": system, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = get(units_server, "/api/units", **params)
        seen += [u["unit"] for u in page["units"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == radios
    r = httpx.get(f"{units_server.url}/api/units", params={"cursor": "Zm9v"}, headers={"X-API-Key": READ_KEY})
    assert r.status_code == 400


# -- attribution ----------------------------------------------------------------------------------


def _named(unit: int, offset: float) -> Named:
    return Named(offset, None, unit, None, False, "srcList", f"R{unit}", "learned")


def test_attribution_rule_segments_and_words():
    on_air = [_named(1, 0.0), _named(2, 4.0), _named(3, 9.0)]
    segments = [
        {"start": 0.2, "end": 3.0, "text": "a"},
        {"start": 3.0, "end": 5.2, "text": "b"},  # straddles 4.0, midpoint 4.1: radio 2
        {
            "start": 7.0,
            "end": 12.0,
            "text": "c",
            "words": [
                {"word": "x", "start": 7.0, "end": 7.5},
                {"word": "y", "start": 9.5, "end": 10.0},
                {"word": "z"},  # not aligned: the segment's radio
            ],
        },
    ]
    out = attribute(segments, on_air)
    assert [s["unit"] for s in out] == [1, 2, 3]  # the third's midpoint is 9.5
    assert [(w["word"], w["unit"]) for w in out[2]["words"]] == [("x", 2), ("y", 3), ("z", 3)]
    assert out[0]["alias"] == "R1" and out[0]["words"] is None
    # Before the first key-up: the first radio; no transmissions: nobody.
    assert attribute([{"start": 0, "end": 1, "text": ""}], [_named(5, 2.0)])[0]["unit"] == 5
    assert attribute([{"start": 0, "end": 1, "text": ""}], [])[0]["unit"] is None


def test_parse_transmissions_sorts_and_bounds():
    parsed = parse_transmissions(
        9,
        "Nine",
        [{"src": 8, "pos": 3}, {"src": 9, "pos": 1}, 7, {"src": 6, "pos": float("nan")}],
        5.0,
        "sources",
    )
    # Sorted by offset (equal offsets keep the sender's order); a bare id keeps the position before
    # it; talkerAlias tags its source radio; the last runs to the end of the audio.
    assert [(t.unit, t.offset, t.tag, t.duration) for t in parsed.transmissions] == [
        (9, 1.0, "Nine", 0.0),
        (7, 1.0, None, 2.0),
        (8, 3.0, None, 2.0),
    ]
    assert len(parsed.problems) == 1 and "entry 3" in parsed.problems[0]
    many = parse_transmissions(None, None, [{"src": 1, "pos": i} for i in range(1500)], None)
    assert len(many.transmissions) == 1000 and many.transmissions[-1].duration is None


# -- the worker: segments attributed on the call page --------------------------------------------


def three_times_wav() -> tuple[bytes, float]:
    """The corpus's ~11 s speech clip three times: (wav bytes, the clip's length).

    The radio pipeline merges speech into windows of up to ~29 s, one segment each, so a shorter
    call is one segment whatever its key-ups (its words carry the radios once aligned): 33 s makes
    two segments, the first ending in the third copy."""
    import av

    with av.open(str(REPO / "tests" / "corpus" / "audio" / "jfk_radio.mp3")) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        chunks = [f.to_ndarray().ravel() for fr in container.decode(audio=0) for f in resampler.resample(fr)]
    pcm = np.concatenate(chunks).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes() * 3)
    return out.getvalue(), len(pcm) / 8000


@pytest.mark.worker
def test_worker_transcript_segments_carry_the_radio_on_air(shared_stack):
    stack = shared_stack
    audio, clip_seconds = three_times_wav()
    first_radio, second_radio = fresh_system(), fresh_system()
    second = round(2 * clip_seconds, 2)  # the second radio keys up for the third copy
    src_list = [
        {"src": first_radio, "pos": 0.0, "tag": "Dispatch"},
        {"src": second_radio, "pos": second, "emergency": 1, "tag": "Car 54"},
    ]
    call_id = trunk_recorder(stack.server, fresh_system(), 900, src_list, audio=audio)
    assert stack.wait_call(call_id)["status"] == "completed", stack.logs()
    call = stack.get(f"/api/calls/{call_id}").json()
    segments = call["segments"]
    assert segments and all(s["words"] is None for s in segments)  # no alignment model offline
    for s in segments:
        expected = first_radio if (s["start"] + s["end"]) / 2 < second else second_radio
        assert s["unit"] == expected, (s, second)
        assert s["alias"] == ("Dispatch" if expected == first_radio else "Car 54")
    assert {s["unit"] for s in segments} == {first_radio, second_radio}, (segments, second)  # both spoke
    assert call["units"][1] == {"unit": second_radio, "alias": "Car 54", "emergency": True}


# -- the migration --------------------------------------------------------------------------------


def test_migration_fills_transmissions_units_and_index_for_old_calls(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade(engine, "0003")
    when = datetime(2026, 1, 1, 12, 0)
    common = {
        "system_id": 5,
        "talkgroup": 9,
        "date_time": when,
        "audio_path": "a",
        "audio_sha256": "0" * 64,
        "audio_bytes": 1,
        "audio_mime": "audio/mpeg",
        "received_at": when,
        "duration_seconds": 6.0,
    }
    insert = text(
        "INSERT INTO calls (system_id, talkgroup, date_time, audio_path, audio_sha256, audio_bytes, audio_mime, "
        "received_at, duration_seconds, client_kind, source, talker_alias, sources) VALUES (:system_id, "
        ":talkgroup, :date_time, :audio_path, :audio_sha256, :audio_bytes, :audio_mime, :received_at, "
        ":duration_seconds, :kind, :source, :alias, :sources)"
    )
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO systems (id, created_at, updated_at) VALUES (5, :t, :t)"), {"t": when})
        conn.execute(insert, {**common, "kind": "sdrtrunk", "source": 777, "alias": "BAT 1", "sources": None})
        src_list = [{"pos": 0, "src": 101, "tag": "E7"}, {"pos": 2.5, "src": 202, "emergency": 1}]
        conn.execute(
            insert,
            {
                **common,
                "kind": "trunk-recorder",
                "source": 101,
                "alias": None,
                "sources": json.dumps(src_list),
            },
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                CallTransmission.call_id,
                CallTransmission.unit,
                CallTransmission.offset_seconds,
                CallTransmission.duration_seconds,
                CallTransmission.emergency,
                CallTransmission.origin,
            ).order_by(CallTransmission.call_id, CallTransmission.seq)
        ).all()
        assert [tuple(r) for r in rows] == [
            (1, 777, 0.0, 6.0, False, "source"),
            (2, 101, 0.0, 2.5, False, "srcList"),
            (2, 202, 2.5, 3.5, True, "srcList"),
        ]
        units = dict(conn.execute(select(Unit.unit, Unit.alias)).all())
        assert units == {777: "BAT 1", 101: "E7", 202: None}
        found = conn.execute(text("SELECT rowid FROM call_search WHERE call_search MATCH '\"2 0 2\"'")).all()
        assert found == [(2,)]
    engine.dispose()
