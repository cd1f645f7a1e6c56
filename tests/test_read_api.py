"""Read API over a real server: auth, filters, cursor pagination, audio with Range, public read."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import ADMIN_KEY, READ_KEY, SCOPED_KEY, UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, clip
from tests.test_upload import fresh_system, post, sdrtrunk_fields


@pytest.fixture(scope="module")
def seeded(server):
    """Five calls on one system, a minute apart, two talkgroups."""
    system = fresh_system()
    base = int(time.time()) - 3600
    ids = []
    for i in range(5):
        r = post(
            server,
            sdrtrunk_fields(system, talkgroup=100 + i % 2, when=base + 60 * i, source=i + 1),
            clip("speech_sdrtrunk.mp3"),
        )
        assert r.status_code == 200
        ids.append(int(r.headers["x-call-id"]))
    return system, base, ids


def get(server, path, key=READ_KEY, **params):
    headers = {"X-API-Key": key} if key else {}
    return httpx.get(f"{server.url}{path}", headers=headers, params=params, timeout=10)


def test_read_needs_a_read_key(server, seeded):
    assert get(server, "/api/calls", key=None).status_code == 401
    assert get(server, "/api/calls", key="nope").status_code == 401
    assert get(server, "/api/calls", key=UPLOAD_KEY).status_code == 403
    r = httpx.get(f"{server.url}/api/calls", headers={"Authorization": f"Bearer {READ_KEY}"})
    assert r.status_code == 200
    assert get(server, "/api/calls", key=ADMIN_KEY).status_code == 200


def test_list_filters_newest_first_and_cursor(server, seeded):
    system, base, ids = seeded
    r = get(server, "/api/calls", system=system, limit=2)
    body = r.json()
    assert [c["id"] for c in body["calls"]] == [ids[4], ids[3]]
    seen = [c["id"] for c in body["calls"]]
    cursor = body["next_cursor"]
    while cursor:
        page = get(server, "/api/calls", system=system, limit=2, cursor=cursor).json()
        seen += [c["id"] for c in page["calls"]]
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))

    tg = get(server, "/api/calls", system=system, talkgroup=101).json()["calls"]
    assert [c["id"] for c in tg] == [ids[3], ids[1]]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 180))
    window = get(server, "/api/calls", system=system, since=since, until=until).json()["calls"]
    assert [c["id"] for c in window] == [ids[2], ids[1]]
    none = get(server, "/api/calls", system=system, has_transcript="true").json()["calls"]
    assert none == []
    assert len(get(server, "/api/calls", system=system, has_transcript="false").json()["calls"]) == 5
    assert get(server, "/api/calls", cursor="%%%").status_code == 422  # not base64url at all
    assert get(server, "/api/calls", cursor="bm9wZQ").status_code == 400  # base64 of "nope"


def test_call_detail_has_every_field(server, seeded):
    system, _, ids = seeded
    call = get(server, f"/api/calls/{ids[0]}").json()
    for field in (
        "system",
        "talkgroup",
        "date_time",
        "source",
        "frequency",
        "talkgroup_label",
        "system_label",
        "audio_sha256",
        "audio_bytes",
        "audio_mime",
        "duration_seconds",
        "received_at",
        "client_kind",
        "key_name",
        "audio_url",
        "transcription_status",
        "transcript",
        "patches",
    ):
        assert field in call
    assert call["system"] == system and call["talkgroup"] == 100 and call["source"] == 1
    assert {"meta", "sources", "frequencies"} <= call.keys()  # the large fields: here, not in lists
    (listed,) = [c for c in get(server, "/api/calls", system=system).json()["calls"] if c["id"] == ids[0]]
    detail_only = ("meta", "sources", "frequencies", "transmissions", "segments")
    assert listed == {k: v for k, v in call.items() if k not in detail_only}
    assert call["date_time"].endswith("+00:00")
    assert get(server, "/api/calls/999999999").status_code == 404


def test_audio_download_and_range(server, seeded):
    _, _, ids = seeded
    audio = clip("speech_sdrtrunk.mp3")
    r = get(server, f"/api/calls/{ids[0]}/audio")
    assert r.status_code == 200 and r.content == audio and r.headers["content-type"] == "audio/mpeg"
    part = httpx.get(
        f"{server.url}/api/calls/{ids[0]}/audio", headers={"X-API-Key": READ_KEY, "Range": "bytes=100-299"}
    )
    assert part.status_code == 206 and part.content == audio[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(audio)}"


def test_systems_and_talkgroups(server, seeded):
    system, _, _ = seeded
    systems = get(server, "/api/systems").json()["systems"]
    assert {"id": system, "label": "County P25"} in [{"id": x["id"], "label": x["label"]} for x in systems]
    tgs = get(server, "/api/talkgroups", system=system).json()["talkgroups"]
    assert [(t["talkgroup"], t["label"]) for t in tgs] == [(100, "FD Dispatch"), (101, "FD Dispatch")]


def test_scoped_key_sees_only_its_systems(server, seeded):
    system, _, _ = seeded
    calls = get(server, "/api/calls", key=SCOPED_KEY, system=system).json()["calls"]
    assert calls == []
    ids = {s["id"] for s in get(server, "/api/systems", key=SCOPED_KEY).json()["systems"]}
    assert system not in ids


def test_health_ready_docs(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["checks"]["database"] == "ok"
    spec = get(server, "/openapi.json").json()
    assert "/api/call-upload" in spec["paths"] and "/api/calls/{call_id}/audio" in spec["paths"]
    assert get(server, "/openapi.json", key=None).status_code == 401  # closed unless auth.public_docs


def test_public_read(tmp_path, database_url):
    srv = ServerProcess(
        tmp_path, base_config(tmp_path / "data", database_url, auth={"public_read": True})
    ).start()
    try:
        assert httpx.get(f"{srv.url}/api/calls").status_code == 200
        assert httpx.get(f"{srv.url}/api/systems").status_code == 200
        # A wrong key is still refused: public read is for anonymous visitors, not for typos.
        assert httpx.get(f"{srv.url}/api/calls", headers={"X-API-Key": "typo"}).status_code == 401
    finally:
        srv.stop()


def test_talkgroups_and_systems_report_counts_and_last_activity(server):
    """The console's talkgroups view: calls per talkgroup and system, and the newest call's time."""
    from tests.conftest import SCOPED_KEY
    from tests.helpers import clip
    from tests.test_upload import fresh_system, post, sdrtrunk_fields

    system = fresh_system()
    now = int(time.time())
    for talkgroup, offset in ((100, 0), (100, 60), (555, 120)):
        r = post(
            server,
            sdrtrunk_fields(system, talkgroup=talkgroup, when=now - 600 + offset),
            clip("speech_sdrtrunk.mp3"),
        )
        assert r.status_code == 200 and r.text == "Call imported successfully.", r.text

    def talkgroups(key: str) -> dict[int, dict]:
        r = httpx.get(f"{server.url}/api/talkgroups", params={"system": system}, headers={"X-API-Key": key})
        return {t["talkgroup"]: t for t in r.json()["talkgroups"]}

    got = talkgroups(READ_KEY)
    assert (got[100]["call_count"], got[555]["call_count"]) == (2, 1)
    assert got[555]["last_call_at"] > got[100]["last_call_at"]
    systems = {
        x["id"]: x
        for x in httpx.get(f"{server.url}/api/systems", headers={"X-API-Key": READ_KEY}).json()["systems"]
    }
    assert systems[system]["call_count"] == 3 and systems[system]["last_call_at"] == got[555]["last_call_at"]
    assert talkgroups(SCOPED_KEY) == {}  # a key without this system sees none of its activity
