"""Issue 13 on the read side, against a real server: out-of-range ids, filters, cursors, bodies and times
get a 4xx naming the range (never a 500 or a traceback), and list pages are bounded in bytes."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from tests.conftest import ADMIN_KEY, READ_KEY, UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, clip
from tests.test_upload import fresh_system, post, sdrtrunk_fields, trunk_recorder_meta

TWO_63 = 2**63
TWO_64 = 2**64


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture
def fresh_log(server):
    """The server log written during one test, to prove no request logged an error."""
    start = len(server.log())
    return lambda: server.log()[start:]


def read(server, path: str, key: str = READ_KEY, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"X-API-Key": key}, params=params, timeout=10)


def field_error(r: httpx.Response) -> tuple[str, str]:
    assert r.status_code == 422, (r.status_code, r.text)
    first = r.json()["detail"][0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        (f"/api/calls/{TWO_63}", {}, "path.call_id"),
        (f"/api/calls/{TWO_63}/audio", {}, "path.call_id"),
        (f"/api/calls/{TWO_63}/transcription", {}, "path.call_id"),
        (f"/api/transcription/jobs/{TWO_64}", {}, "path.job_id"),
        ("/api/calls", {"talkgroup": str(TWO_63)}, "query.talkgroup"),
        ("/api/calls", {"system": str(TWO_64)}, "query.system"),
        ("/api/talkgroups", {"system": str(TWO_64)}, "query.system"),
        ("/api/calls", {"talkgroup": "1e300"}, "query.talkgroup"),
        ("/api/calls", {"system": "-1"}, "query.system"),
    ],
)
def test_ids_past_63_bits_are_422(server, fresh_log, path, params, where):
    r = read(server, path, **params)
    loc, msg = field_error(r)
    assert loc == where
    if "e300" not in str(params):
        assert "9223372036854775807" in msg or "greater than or equal to 0" in msg, msg
    assert "Traceback" not in fresh_log() and "ERROR" not in fresh_log()


def test_largest_id_is_a_plain_404(server):
    assert read(server, f"/api/calls/{TWO_63 - 1}").status_code == 404
    assert read(server, f"/api/transcription/jobs/{TWO_63 - 1}").status_code == 404


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("since", "0001-01-01T00:00:00+05:00"),
        ("until", "9999-12-31T23:59:59-05:00"),
        ("until", "9999-12-31T23:59:59"),
        ("since", "1969-12-31T00:00:00Z"),
    ],
)
def test_times_at_the_year_limits_are_422(server, fresh_log, name, value):
    loc, msg = field_error(read(server, "/api/calls", **{name: value}))
    assert loc == f"query.{name}" and "time must be between 1970-01-02 and 2100-01-01" in msg
    assert "Traceback" not in fresh_log()


@pytest.mark.parametrize(
    "raw",
    [
        f"2026-01-01T00:00:00|{TWO_63}",
        "2026-01-01T00:00:00|-1",
        "9999-12-31T23:59:59-05:00|5",
        "0001-01-01T00:00:00+05:00|5",
        "not a time|5",
        "2026-01-01T00:00:00",
    ],
)
def test_cursors_out_of_range_are_400(server, fresh_log, raw):
    r = read(server, "/api/calls", cursor=cursor_of(raw))
    assert r.status_code == 400 and r.json()["detail"].startswith("Invalid cursor"), r.text
    assert "Traceback" not in fresh_log()


def jobs_post(server, body, key: str = ADMIN_KEY, **kw) -> httpx.Response:
    headers = {"X-API-Key": key, "Content-Type": "application/json"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}/api/transcription/jobs", content=content, headers=headers, timeout=10, **kw
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"call_id": TWO_63}, "body.call_id"),
        ({"call_id": -5}, "body.call_id"),
        ({"call_id": 1, "model": "tiny\u0000.en"}, "body.model"),
        ({"call_id": 1, "language": "e\nn"}, "body.language"),
        ({"call_id": 1, "priority": 9}, "body.priority"),
        ({}, "body.call_id"),
        (b"[" * 16_000, "body"),
        (b"{not json", "body"),
    ],
)
def test_job_body_out_of_range_is_422(server, fresh_log, body, where):
    loc, _ = field_error(jobs_post(server, body))
    assert loc.startswith(where)
    assert "Traceback" not in fresh_log()


def test_job_body_is_read_only_after_the_key_and_only_so_far(server):
    big = json.dumps({"call_id": 1, "model": "x" * 40_000}).encode()
    assert jobs_post(server, big, key=None).status_code == 401
    assert jobs_post(server, big, key=READ_KEY).status_code == 403
    r = jobs_post(server, big)
    assert r.status_code == 413 and "16384" in r.json()["detail"]


# -- list pages bounded in bytes ---------------------------------------------------------------------

BUDGET = 3000


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory, database_url):
    """A server whose list pages stop at BUDGET bytes, and uploads large enough to carry big meta."""
    work = tmp_path_factory.mktemp("small-pages")
    config = base_config(work / "data", database_url, api={"max_list_bytes": BUDGET})
    config["upload"]["max_upload_bytes"] = 5_000_000
    srv = ServerProcess(work, config).start()
    yield srv
    srv.stop()


def upload_trunk_recorder(server, system: int, start: int, sources: int) -> int:
    meta = trunk_recorder_meta(3101, start)
    meta["srcList"] = [
        {"src": 4200000 + n, "time": start, "pos": n / 10, "emergency": 0, "signal_system": "", "tag": "E12"}
        for n in range(sources)
    ]
    meta["freqList"] = [{"freq": 851262500, "time": start, "pos": n / 10, "len": 0.1} for n in range(sources)]
    r = httpx.post(
        f"{server.url}/api/trunk-recorder-call-upload",
        data={"key": UPLOAD_KEY, "system": str(system)},
        files={
            "audio": ("call.m4a", clip("speech.m4a"), "application/octet-stream"),
            "meta": ("call.json", json.dumps(meta).encode(), "application/json"),
        },
        headers={"User-Agent": "TrunkRecorder1.0"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return int(r.headers["x-call-id"])


def test_list_items_leave_out_large_fields_and_pages_stop_at_the_byte_budget(small_pages):
    system = fresh_system()
    start = int(time.time()) - 600
    ids = [upload_trunk_recorder(small_pages, system, start + 10 * n, sources=2000) for n in range(6)]

    detail = read(small_pages, f"/api/calls/{ids[0]}").json()
    assert len(detail["sources"]) == 2000 and len(detail["frequencies"]) == 2000
    assert "county" in json.dumps(detail["meta"])  # trunk-recorder's meta, whatever its stored shape
    detail_bytes = len(read(small_pages, f"/api/calls/{ids[0]}").content)
    assert detail_bytes > 200_000

    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        params = {"system": system, "limit": 20, **({"cursor": cursor} if cursor else {})}
        r = read(small_pages, "/api/calls", **params)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        page = r.json()
        pages += 1
        for item in page["calls"]:
            assert not {"meta", "sources", "frequencies"} & item.keys()
            assert item["audio_url"] == f"/api/calls/{item['id']}/audio"
        sizes = [
            len(json.dumps(c, ensure_ascii=False, separators=(",", ":")).encode()) for c in page["calls"]
        ]
        # At most the budget, unless one call alone is larger (a page always carries one).
        assert sum(sizes) + len(sizes) <= BUDGET or len(sizes) == 1
        assert len(r.content) < BUDGET + 200
        seen += [c["id"] for c in page["calls"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert 1 < pages < len(ids) + 1  # the budget split the 20-call page; no empty page at the end


def test_one_call_over_the_budget_still_makes_a_page(tmp_path, database_url):
    config = base_config(tmp_path / "data", database_url, api={"max_list_bytes": 1})
    srv = ServerProcess(tmp_path, config).start()
    try:
        system = fresh_system()
        base = int(time.time()) - 300
        ids = [
            int(
                post(srv, sdrtrunk_fields(system, when=base + n * 30), clip("speech_sdrtrunk.mp3")).headers[
                    "x-call-id"
                ]
            )
            for n in range(3)
        ]
        seen, cursor = [], None
        for _ in range(5):
            page = read(srv, "/api/calls", system=system, **({"cursor": cursor} if cursor else {})).json()
            assert len(page["calls"]) == 1
            seen.append(page["calls"][0]["id"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
    finally:
        srv.stop()


@pytest.mark.parametrize("value", ["1_000", "\u0661\u0662", " 7", "+7"])
def test_query_ids_take_only_ascii_digits(server, value):
    """Python's int() reads all of these; a radio id is written with 0-9 only (issue 13, item 10)."""
    r = httpx.get(f"{server.url}/api/calls", params={"talkgroup": value}, headers={"X-API-Key": READ_KEY})
    assert r.status_code == 422 and "digits 0-9" in r.text


def test_a_json_body_that_is_not_utf8_is_422_not_500(server):
    """Both JSON-body routes read the body themselves; bytes that are not UTF-8 are a client error."""
    import httpx

    from tests.conftest import ADMIN_KEY

    for path in ("/api/transcription/backfill", "/api/transcription/jobs"):
        r = httpx.post(
            f"{server.url}{path}",
            content=b"\xef\xbf\xbdX\xff\xfe",
            headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"},
        )
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["detail"][0]["type"] == "json_invalid"
