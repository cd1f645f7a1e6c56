"""Issue 13's upload defects, each reproduced against a real Hypercorn server with tight limits:
what a client without a key can make the server hold, timeouts, the size cap on bytes actually
received, and inputs that used to become 500/503."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MAX_UPLOAD, UPLOAD_KEY, base_config
from tests.helpers import SDRTRUNK_BOUNDARY, ServerProcess, clip, sdrtrunk_body
from tests.test_upload import fresh_system, post, sdrtrunk_fields

BODY_TIMEOUT = 1.5
KEY_TIMEOUT = 4.0
PER_CLIENT = 100_000
TOTAL = 150_000


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("strict")
    config = base_config(work / "data", database_url)
    config["upload"].update(
        body_timeout_seconds=BODY_TIMEOUT,
        unauthenticated_timeout_seconds=KEY_TIMEOUT,
        unauthenticated_bytes_per_client=PER_CLIENT,
        unauthenticated_bytes_total=TOTAL,
    )
    proc = ServerProcess(work, config).start()
    yield proc
    proc.stop()


def incoming(server: ServerProcess) -> list[Path]:
    return sorted((Path(server.config["data_dir"]) / "audio" / ".incoming").glob("*"))


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{SDRTRUNK_BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"


def open_upload(
    server: ServerProcess,
    first: bytes,
    content_length: int | None = MAX_UPLOAD,
    path: str = "/api/call-upload",
    source: str = "127.0.0.1",
) -> socket.socket:
    """Send headers and the start of a body, leave the connection open (a stalled client)."""
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    head.append(
        f"Content-Length: {content_length}" if content_length is not None else "Transfer-Encoding: chunked"
    )
    head.append(f"Content-Type: multipart/form-data; boundary={SDRTRUNK_BOUNDARY}")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0))
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + first)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, str]:
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = bytes(data).partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(v)
                    for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, body.decode(errors="replace")


def test_bad_key_first_is_refused_before_any_audio_is_sent(strict_server):
    """SDRTrunk order: key among the first parts. The upload is refused after its first part."""
    sock = open_upload(strict_server, part("key", b"wrong") + part("system", b"11"))
    started = time.monotonic()
    status, body = read_answer(sock)
    sock.close()
    assert status == 401 and body == "Invalid API key"
    assert time.monotonic() - started < BODY_TIMEOUT  # answered on the key, not on a timeout


def test_audio_before_a_bad_key_is_spooled_to_disk_and_removed(strict_server):
    """trunk-recorder order: audio first. It goes to a temp file, gone the moment the key fails."""
    sock = open_upload(strict_server, part("audio", clip("speech_sdrtrunk.mp3"), "call.m4a"))
    deadline = time.monotonic() + 1
    while not incoming(strict_server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert incoming(strict_server), "the audio part should be on disk, not in memory"
    sock.sendall(part("key", b"wrong") + f"--{SDRTRUNK_BOUNDARY}\r\n".encode())  # the key part ends
    status, body = read_answer(sock)
    sock.close()
    assert (status, body) == (401, "Invalid API key")
    assert incoming(strict_server) == []


def test_stalled_body_gets_408_and_leaves_nothing(strict_server):
    sock = open_upload(
        strict_server,
        part("key", UPLOAD_KEY.encode()) + part("audio", b"ID3\x03" + b"\0" * 5000, "a.mp3")[:-2],
    )
    started = time.monotonic()
    status, body = read_answer(sock)
    sock.close()
    assert status == 408 and "nothing received" in body
    assert BODY_TIMEOUT - 0.2 < time.monotonic() - started < BODY_TIMEOUT + 5
    assert incoming(strict_server) == []


def test_trickle_without_a_key_is_cut_at_the_key_deadline(strict_server):
    """A byte every second resets the body timeout but not the deadline for the key."""
    sock = open_upload(strict_server, part("audio", b"ID3", "a.mp3")[:-2])
    started = time.monotonic()
    sock.settimeout(0.9)
    status = 0
    while time.monotonic() - started < KEY_TIMEOUT + 5:
        try:
            sock.sendall(b"\0")
        except OSError:
            break
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        status = int(data.split(b" ")[1]) if data else status
        break
    sock.close()
    assert status == 408
    assert KEY_TIMEOUT - 0.5 < time.monotonic() - started < KEY_TIMEOUT + 3


def test_per_client_budget_for_bytes_before_the_key(strict_server):
    sock = open_upload(strict_server, part("audio", b"ID3" + b"\0" * (PER_CLIENT + 10_000), "a.mp3"))
    status, body = read_answer(sock)
    sock.close()
    assert status == 429 and "unauthenticated" in body
    assert incoming(strict_server) == []


def test_total_budget_across_clients(strict_server):
    """Two addresses each under their own budget, together over the total: the second waits."""
    held = open_upload(strict_server, part("audio", b"ID3" + b"\0" * 90_000, "a.mp3"), source="127.0.0.2")
    time.sleep(0.3)
    try:
        second = open_upload(
            strict_server, part("audio", b"ID3" + b"\0" * 90_000, "a.mp3"), source="127.0.0.3"
        )
        status, body = read_answer(second)
        second.close()
        assert status == 503 and "retry" in body
    finally:
        held.close()
    # With the first gone its bytes are returned: the same upload from .3 now only lacks a key.
    time.sleep(0.3)
    body = part("audio", b"ID3" + b"\0" * 90_000, "a.mp3") + f"--{SDRTRUNK_BOUNDARY}--\r\n".encode()
    third = open_upload(strict_server, body, content_length=len(body), source="127.0.0.3")
    status, _ = read_answer(third)
    third.close()
    assert status == 401


def test_chunked_body_cannot_skip_the_size_cap(strict_server):
    """Four audio parts of the cap each in a chunked body: refused, nothing stored."""
    sock = open_upload(strict_server, b"", content_length=None)
    payload = part("key", UPLOAD_KEY.encode()) + part("audio", b"ID3" + b"\0" * MAX_UPLOAD, "a.mp3")
    try:
        for i in range(0, len(payload), 65536):
            piece = payload[i : i + 65536]
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    except OSError:
        pass  # the server may close as soon as it has answered
    status, body = read_answer(sock)
    sock.close()
    assert status == 413 and "too large" in body.lower()
    assert incoming(strict_server) == []


def test_second_audio_part_is_refused(strict_server):
    audio = clip("speech_sdrtrunk.mp3")
    body = sdrtrunk_body(sdrtrunk_fields(fresh_system()), audio)
    body = body.replace(
        f"--{SDRTRUNK_BOUNDARY}--".encode(),
        part("audio", audio, "b.mp3") + f"--{SDRTRUNK_BOUNDARY}--".encode(),
    )
    r = httpx.post(
        f"{strict_server.url}/api/call-upload",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={SDRTRUNK_BOUNDARY}"},
    )
    assert r.status_code == 400 and "more than one audio part" in r.text


def test_form_with_many_fields_is_refused_quickly(strict_server):
    """100,000 tiny fields used to take ~2 s of event-loop time; now the 65th part ends it."""
    body = part("key", UPLOAD_KEY.encode()) + b"".join(part(f"f{i}", b"x") for i in range(10_000))
    started = time.monotonic()
    r = httpx.post(
        f"{strict_server.url}/api/call-upload",
        content=body + f"--{SDRTRUNK_BOUNDARY}--\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={SDRTRUNK_BOUNDARY}"},
        timeout=20,
    )
    assert r.status_code == 413 and "Too many form parts" in r.text
    health = httpx.get(f"{strict_server.url}/health")
    assert health.status_code == 200
    assert time.monotonic() - started < 10


def test_long_boundary_is_400(strict_server):
    boundary = "b" * 300
    r = httpx.post(
        f"{strict_server.url}/api/call-upload",
        content=f"--{boundary}\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 400 and "boundary" in r.text


BIG = str(2**63)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("talkgroup", BIG, "Incomplete call data: no talkgroup (not a whole number"),
        ("talkgroup", "1e300", "Incomplete call data: no talkgroup (not a whole number"),
        ("talkgroup", "1_000", "Incomplete call data: no talkgroup (not a whole number"),
        ("talkgroup", "\u0661\u0662\u0663", "Incomplete call data: no talkgroup (not a whole number"),
        ("system", str(2**64), "Incomplete call data: no system (not a whole number"),
        ("dateTime", "9999-12-31T23:59:59", "Incomplete call data: no dateTime (not a time"),
        ("dateTime", "9999-12-31T23:59:59-05:00", "Incomplete call data: no dateTime (not a time"),
        ("dateTime", "0001-01-01T00:00:00+05:00", "Incomplete call data: no dateTime (not a time"),
    ],
)
def test_out_of_range_fields_are_417_not_5xx(strict_server, field, value, message):
    fields = [(k, value if k == field else v) for k, v in sdrtrunk_fields(fresh_system())]
    r = post(strict_server, fields, clip("speech_sdrtrunk.mp3"))
    assert r.status_code == 417, r.text
    assert r.text.startswith(message)


def test_optional_number_out_of_range_is_dropped_not_fatal(strict_server):
    fields = [(k, BIG if k == "source" else v) for k, v in sdrtrunk_fields(fresh_system())]
    r = post(strict_server, fields, clip("speech_sdrtrunk.mp3"), headers={"Accept": "application/json"})
    assert r.status_code == 200
    call = httpx.get(
        f"{strict_server.url}/api/calls/{r.json()['id']}", headers={"X-API-Key": "admin-key"}
    ).json()
    assert call["source"] is None


@pytest.mark.parametrize(
    ("meta", "why"),
    [
        ("[" * 100_000, "invalid JSON"),
        (json.dumps({"a": [[[[[[[[[[1]]]]]]]]]]}), "nested deeper"),
        ('{"talkgroup": 5, "freq": NaN}', "NaN is not valid JSON"),
        ('{"talkgroup": 5, "freq": Infinity}', "Infinity is not valid JSON"),
        ('{"talkgroup": 5, "srcList": [{"pos": 1e999, "src": 7}]}', "1e999 is out of range"),
    ],
)
def test_bad_trunk_recorder_meta_is_417(strict_server, meta, why):
    r = httpx.post(
        f"{strict_server.url}/api/trunk-recorder-call-upload",
        data={"key": UPLOAD_KEY, "system": str(fresh_system()), "meta": meta},
        files={"audio": ("a.m4a", clip("speech.m4a"))},
    )
    assert r.status_code == 417 and r.text.startswith("Incomplete call data: no meta") and why in r.text


def test_wav_with_no_samples_is_415(strict_server):
    import struct

    wav = (
        b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    )
    wav += b"data" + struct.pack("<I", 0)
    r = post(strict_server, sdrtrunk_fields(fresh_system()), wav, filename="empty.wav")
    assert r.status_code == 415 and "no samples" in r.text


def test_rejected_upload_leaves_no_directory(strict_server):
    system = fresh_system()
    r = post(strict_server, sdrtrunk_fields(system), b"not audio at all" * 100)
    assert r.status_code == 415
    root = Path(strict_server.config["data_dir"]) / "audio"
    assert not [p for p in root.rglob(str(system))]
    assert incoming(strict_server) == []


def test_trunk_recorder_source_list_is_stored_once(strict_server):
    system = fresh_system()
    start = int(time.time())
    src = [
        {"src": 1000 + i, "time": start + i, "pos": i, "emergency": 0, "tag": f"unit {i}"} for i in range(50)
    ]
    meta = {
        "talkgroup": 3101,
        "start_time": start,
        "freq": 851012500,
        "srcList": src,
        "freqList": [],
        "short_name": "c",
    }
    r = httpx.post(
        f"{strict_server.url}/api/trunk-recorder-call-upload",
        data={"key": UPLOAD_KEY, "system": str(system), "meta": json.dumps(meta)},
        files={"audio": ("a.m4a", clip("speech.m4a"))},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    call = httpx.get(
        f"{strict_server.url}/api/calls/{r.json()['id']}", headers={"X-API-Key": "admin-key"}
    ).json()
    assert len(call["sources"]) == 50
    assert (
        "srcList" not in call["meta"]["trunk_recorder"]
        and call["meta"]["trunk_recorder"]["short_name"] == "c"
    )


def test_early_answer_closes_so_a_client_writing_its_body_is_not_stuck(strict_server):
    """A client that writes its whole body before reading (curl, Java) must not block on a server
    that answered early and stopped reading: the answer says Connection: close and the socket closes."""
    audio = b"ID3" + b"\0" * 250_000
    body = part("key", b"wrong") + part("audio", audio, "a.mp3") + f"--{SDRTRUNK_BOUNDARY}--\r\n".encode()
    sock = open_upload(strict_server, b"", content_length=len(body))
    sock.settimeout(10)
    started = time.monotonic()
    with contextlib.suppress(OSError):  # reset by the server once it closed: also not stuck
        sock.sendall(body)
    status, text = read_answer(sock)
    closed = sock.recv(1) == b"" if status else True
    sock.close()
    assert (status, text) == (401, "Invalid API key") and closed
    assert time.monotonic() - started < BODY_TIMEOUT  # not freed by the body timeout


def test_nul_characters_in_labels_are_dropped_not_a_503(strict_server):
    """PostgreSQL text cannot hold NUL (SQLite can): a talker alias with one was a 503 there
    (found by the fuzz suite on PostgreSQL)."""
    fields = [*sdrtrunk_fields(fresh_system()), ("talkerAlias", "E\x0012")]
    fields = [(k, v) for k, v in fields if not (k == "talkerAlias" and v == "E12")]
    r = post(
        strict_server,
        fields,
        clip("speech_sdrtrunk.mp3"),
        filename="a\x00b.mp3",
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    call = httpx.get(
        f"{strict_server.url}/api/calls/{r.json()['id']}", headers={"X-API-Key": "admin-key"}
    ).json()
    assert call["talker_alias"] == "E12"
