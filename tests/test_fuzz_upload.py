"""Property-based fuzz of the two upload routes, raw bytes on a socket against a real server.

Hypothesis draws the multipart *shape* (part order, missing and duplicated parts, odd
Content-Disposition spellings, parts without a name, long or odd boundaries, preamble, missing
closing boundary, truncated bodies, chunked transfer), the *field values* (ids at and past 2^63,
``1_000``, non-ASCII digits, ``1e300``, NaN, times at the year limits, deeply nested JSON, long
strings) and the *audio* (real clips whole or truncated, a real header followed by garbage, random
bytes, a WAV with no samples).

The properties, for every request:
- the server answers (a complete request never meets a closed socket or a hang) and never 5xx;
- 200 only when a key part holds a key with the upload scope;
- every call answered ``Call imported successfully.`` is readable with the admin key at
  ``/api/calls/{id}`` and its ``/audio`` is byte for byte one of the audio parts sent.

Inputs are derandomized (CI repeats them) and bounded (~300 per route, RDIO_FUZZ_SCALE scales).
With RDIO_FUZZ_COLLECT=1 a violation is recorded instead of failing the example, so one run lists
every distinct failure (the last test then fails with all of them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, composite

from tests.conftest import (
    ADMIN_KEY,
    DISABLED_KEY,
    IP_KEY,
    MAX_UPLOAD,
    RATE_KEY,
    READ_KEY,
    SCOPED_KEY,
    UPLOAD_KEY,
)
from tests.fuzz_support import Tally, admin_headers, fuzz_server, fuzz_settings, tracebacks
from tests.helpers import ServerProcess, clip

pytestmark = pytest.mark.timeout(900)

COLLECT = os.environ.get("RDIO_FUZZ_COLLECT") == "1"
UPLOAD_KEYS = {UPLOAD_KEY, ADMIN_KEY, SCOPED_KEY, RATE_KEY}
SUCCESS = "Call imported successfully."
# Above the server's 30 s body timeout, so a stalled read shows as a hang rather than a slow answer.
ANSWER_TIMEOUT = float(os.environ.get("RDIO_FUZZ_ANSWER_TIMEOUT", "45"))


@dataclass
class UploadFuzz:
    server: ServerProcess
    tally: Tally
    violations: list[str] = field(default_factory=list)
    accepted: int = 0


@pytest.fixture(scope="module")
def upload_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UploadFuzz]:
    work = tmp_path_factory.mktemp("fuzz-upload")
    with fuzz_server(work) as server:
        fuzz = UploadFuzz(server, Tally(work / "fuzz-counts.json"))
        yield fuzz
        fuzz.tally.write()


# --- values ---------------------------------------------------------------------------------------

_ODD_NUMBERS = [
    "11", "12", "100", "101", "1", "0", "-1", " 42 ", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "-9223372036854775809", "1_000", "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u00b2", "1e300", "1E3",
    "4.5", "NaN", "Infinity", "-Infinity", "0x1F", "", "null", "9" * 400, "1" * 5000,
]  # fmt: skip
_ODD_TIMES = [
    "1767000000", "1767000000123", "0", "-1", "1e300", "NaN", "inf", "253402300800",
    "99999999999999999999", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59", "0001-01-01T00:00:00", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+14:00",
    "2026-13-45T99:99:99", "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2026-01-01",
]  # fmt: skip
_ODD_JSON = [
    "[101,102]", "101,102", "[]", "[" * 5000, "[" * 100_000, "[[[[1]]]]", '[{"src": 4242, "time": 1}]',
    "[1e400]", "[NaN]", "[Infinity]", "[9223372036854775808]", '{"a": 1}', "null", "[" + "1," * 20000 + "1]",
]  # fmt: skip

numbers = st.one_of(
    st.sampled_from(_ODD_NUMBERS), st.integers(-(2**70), 2**70).map(str), st.text(max_size=20)
)
times = st.one_of(
    st.sampled_from(_ODD_TIMES),
    st.integers(-(2**66), 2**66).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_texts = st.one_of(st.sampled_from(_ODD_JSON), json_values.map(json.dumps))
texts = st.one_of(st.text(max_size=300), st.sampled_from(["x" * 5000, "\x00\x01\r\n--x", "null", "é" * 3000]))
keys = st.one_of(
    st.sampled_from(
        [UPLOAD_KEY] * 6
        + [ADMIN_KEY, SCOPED_KEY, RATE_KEY, READ_KEY, DISABLED_KEY, IP_KEY, "", "nope", f" {UPLOAD_KEY} "]
    ),
    st.text(max_size=50),
)

_FIELD_VALUES: dict[str, st.SearchStrategy[str]] = {
    "key": keys,
    "system": numbers,
    "systemId": numbers,
    "talkgroup": numbers,
    "talkgroupId": numbers,
    "dateTime": times,
    "timestamp": times,
    "frequency": numbers,
    "source": numbers,
    "frequencies": json_texts,
    "sources": json_texts,
    "patches": json_texts,
    "talkgroupLabel": texts,
    "talkgroupGroup": texts,
    "talkgroupTag": texts,
    "talkgroupName": texts,
    "systemLabel": texts,
    "talkerAlias": texts,
    "site": texts,
    "audioName": texts,
    "audioType": texts,
    "test": st.sampled_from(["1", "0", "true", "false", "", "yes"]),
}


@composite
def fields(draw: DrawFn, kind: str) -> dict[str, str]:
    """A good call (a fresh time, so not a duplicate) with a few fields replaced by odd values,
    so each odd value reaches the code that reads it instead of stopping at a missing field."""
    out = {"key": UPLOAD_KEY, "system": "11"}
    names = ["key", "system", "systemId", "dateTime", "talkgroup"]
    if kind == "rdio":
        out |= {
            "talkgroup": str(draw(st.integers(100, 120))),
            "dateTime": str(draw(st.integers(1_767_000_000, 1_799_999_999))),
        }
        # The fields that reach the database and the file path are drawn three times as often.
        names = list(_FIELD_VALUES) + ["system", "talkgroup", "dateTime"] * 3
    for name in dict.fromkeys(draw(st.lists(st.sampled_from(names), max_size=4))):
        out[name] = draw(_FIELD_VALUES[name])
    return out


_META_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "start_time": st.one_of(st.integers(-(2**66), 2**66), st.floats(), st.sampled_from(_ODD_TIMES)),
    "talkgroup": st.one_of(st.integers(-(2**66), 2**66), st.floats(), st.sampled_from(_ODD_NUMBERS)),
    "freq": st.one_of(st.integers(-(2**66), 2**66), st.floats()),
    "system": st.one_of(st.integers(-(2**66), 2**66), st.sampled_from(_ODD_NUMBERS)),
    "srcList": st.one_of(json_values, st.lists(st.fixed_dictionaries({"src": st.integers(-(2**66), 2**66)}))),
    "freqList": json_values,
    "patched_talkgroups": st.one_of(json_values, st.lists(st.integers(-(2**66), 2**66), max_size=5)),
    "talkgroup_tag": json_values,
    "talkgroup_description": json_values,
    "short_name": json_values,
    "audio_type": json_values,
}


@composite
def metas(draw: DrawFn) -> str:
    """trunk-recorder's meta JSON: a good call with odd members, or JSON that is odd as a whole."""
    # Other talkgroups and times than the call-upload fuzz, whose calls would make these duplicates.
    meta: dict[str, Any] = {
        "talkgroup": draw(st.integers(200, 220)),
        "start_time": draw(st.integers(1_800_000_000, 1_899_999_999)),
    }
    for name in draw(st.lists(st.sampled_from(list(_META_VALUES)), max_size=4, unique=True)):
        meta[name] = draw(_META_VALUES[name])
    if draw(st.integers(0, 3)):
        return json.dumps(meta)  # NaN/Infinity floats come out as bare NaN/Infinity
    return draw(
        st.one_of(
            st.sampled_from([*_ODD_JSON, '{"talkgroup": 1e309}', "{", '{"talkgroup": 100', "", "\ufeff{}"]),
            json_values.map(json.dumps),
            st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
        )
    )


def _empty_wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    return out.getvalue()


CLIPS = [
    clip(name) for name in ("speech_sdrtrunk.mp3", "speech.m4a", "speech.opus", "speech.flac", "speech.wav")
]
audio_bytes = st.one_of(
    st.sampled_from(CLIPS),
    st.sampled_from(CLIPS).flatmap(lambda c: st.integers(0, len(c)).map(lambda n: c[:n])),
    st.tuples(st.sampled_from(CLIPS), st.integers(4, 200), st.binary(max_size=4000)).map(
        lambda t: t[0][: t[1]] + t[2]
    ),
    st.binary(max_size=4000),
    st.sampled_from(
        [b"", _empty_wav(), clip("not_audio.mp3"), clip("short_keyup.mp3"), b"\x00" * (MAX_UPLOAD + 1)]
    ),
)


# --- multipart shapes -----------------------------------------------------------------------------

_DISPOSITIONS = [
    'form-data; name="{n}"', "form-data; name={n}", 'form-data;name="{n}"', 'form-data; name ="{n}"',
    'FORM-DATA; NAME="{n}"', 'form-data; name="{n}"; name="other"', "form-data; name=\"{n}\"; x=\"a;b\"",
]  # fmt: skip
_AUDIO_DISPOSITIONS = [
    'form-data; filename="20260103_003124.796.mp3"; name="{n}"', 'form-data; name="{n}"; filename ="a.mp3"',
    "form-data; name=\"{n}\"; filename*=UTF-8''%C3%A9.mp3", 'form-data; name="{n}"; filename=""',
    'form-data; name="{n}"; filename="' + "a" * 2000 + '"', 'form-data; name="{n}"; filename="../../etc/x"',
]  # fmt: skip
_NAMELESS = ["form-data", 'form-data; filename="x.mp3"', 'form-data; name=""', "", "garbage"]
_HEADER_NAMES = ["Content-Disposition", "content-disposition", "CONTENT-DISPOSITION"]
_PART_TYPES = [
    None,
    None,
    "audio/mpeg",
    "application/octet-stream",
    "text/plain; charset=utf-8",
    'x/y; a="b"',
]


@dataclass
class Part:
    name: str | None
    value: bytes
    headers: list[str]

    def describe(self) -> str:
        return f"{self.headers!r} {len(self.value)}B {self.value[:60]!r}"


@composite
def parts(draw: DrawFn, kind: str) -> list[Part]:
    values = dict(draw(fields(kind)))
    if kind == "trunk-recorder":
        values["meta"] = draw(metas())
    out: list[Part] = []
    for name, value in values.items():
        disposition = draw(st.sampled_from(_DISPOSITIONS)).format(n=name)
        out.append(
            Part(name, value.encode("utf-8", "surrogatepass"), [f"Content-Disposition: {disposition}"])
        )
    audio = draw(audio_bytes)
    disposition = draw(st.sampled_from(_AUDIO_DISPOSITIONS + _DISPOSITIONS)).format(n="audio")
    header_name = draw(st.sampled_from(_HEADER_NAMES))
    audio_part = Part("audio", audio, [f"{header_name}: {disposition}"])
    content_type = draw(st.sampled_from(_PART_TYPES))
    if content_type:
        audio_part.headers.append(f"Content-Type: {content_type}")
        if draw(st.booleans()):
            audio_part.headers.append("Content-Type: audio/mpeg")  # duplicated, as some clients do
    # trunk-recorder sends audio first, SDRTrunk last; anything else is drawn below.
    out.insert(0 if kind == "trunk-recorder" else len(out), audio_part)

    shape = draw(
        st.sampled_from(["as is", "as is", "shuffled", "dropped", "duplicated", "nameless", "headers"])
    )
    if shape == "shuffled":
        out = list(draw(st.permutations(out)))
    elif shape == "dropped":
        drop = draw(st.sets(st.integers(0, len(out) - 1), min_size=1, max_size=len(out)))
        out = [p for i, p in enumerate(out) if i not in drop]
    elif shape == "duplicated":
        again = draw(st.lists(st.sampled_from(out), min_size=1, max_size=4))
        out += [Part(p.name, draw(audio_bytes) if p.name == "audio" else p.value, p.headers) for p in again]
    elif shape == "nameless":
        where = draw(st.integers(0, len(out)))
        out.insert(where, Part(None, b"x", [f"Content-Disposition: {draw(st.sampled_from(_NAMELESS))}"]))
    elif shape == "headers" and out:
        victim = draw(st.sampled_from(out))
        victim.headers = victim.headers + draw(
            st.sampled_from(
                [
                    [f"X-Extra-{i}: {i}" for i in range(40)],
                    ["Content-Transfer-Encoding: base64"],
                    ["X-Long: " + "h" * 20000],
                    ["no colon here"],
                    ['Content-Disposition : form-data; name="x"'],
                    [],
                ]
            )
        )
    return out


_TOKEN = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
good_boundaries = st.one_of(
    st.sampled_from(["--sdrtrunk-sdrtrunk-sdrtrunk", "b", "x" * 70]),
    st.text(alphabet=_TOKEN, min_size=1, max_size=70),
)
odd_boundaries = st.one_of(
    st.sampled_from(["y" * 257, "z" * 3000, "with space", "\u00fcmlaut", "a;b=c", 'q"uote', ""]),
    st.text(min_size=1, max_size=300).filter(lambda b: "\r" not in b and "\n" not in b),
)
# One framing defect at a time (or none, most of the time), so that a clean frame carries the odd
# values to the code that reads them, and each defect meets an otherwise valid request.
FRAMING_DEFECTS = [
    "odd boundary", "LF line ends", "no closing boundary", "boundary mismatch", "no boundary",
    "url-encoded", "text/plain", "no content type", "truncated", "short content-length", "preamble",
]  # fmt: skip
_CLEAN_TYPES = [
    "multipart/form-data; boundary={b}",
    'multipart/form-data; boundary="{b}"',
    "Multipart/Form-Data;boundary={b}",
    "multipart/form-data; boundary={b}; charset=utf-8",
]


@dataclass
class Request:
    path: str
    head: list[str]
    body: bytes
    mode: str  # length | chunked | truncated | short-length
    chunks: list[int]
    cut: int
    parts: list[Part]
    content_type: str | None
    defect: str | None

    @property
    def complete(self) -> bool:
        return self.mode in ("length", "chunked")

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return self.describe()[:4000]

    def describe(self) -> str:
        lines = [
            f"POST {self.path} ({self.mode}, framing defect: {self.defect}, {len(self.body)} B, cut {self.cut})"
        ]
        lines += [f"  {h[:200]}" for h in self.head]
        lines += [f"  part {p.describe()[:400]}" for p in self.parts]
        return "\n".join(lines)

    def raw(self) -> list[bytes]:
        head = "\r\n".join(self.head) + "\r\n\r\n"
        if self.mode == "chunked":
            out, at = bytearray(), 0
            for size in [*self.chunks, len(self.body)]:
                piece = self.body[at : at + size]
                at += len(piece)
                if piece:
                    out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            return [head.encode("latin-1", "replace"), bytes(out) + b"0\r\n\r\n"]
        body = self.body[: self.cut] if self.mode == "truncated" else self.body
        return [head.encode("latin-1", "replace"), body]


@composite
def requests(draw: DrawFn, path: str, kind: str) -> Request:
    defect = draw(st.sampled_from([None] * len(FRAMING_DEFECTS) * 2 + FRAMING_DEFECTS))
    boundary = draw(odd_boundaries if defect == "odd boundary" else good_boundaries)
    items = draw(parts(kind))
    eol = b"\n" if defect == "LF line ends" else b"\r\n"
    body = bytearray(b"preamble text\r\n" if defect == "preamble" else b"")
    marker = boundary.encode("utf-8", "surrogatepass")
    for part in items:
        body += b"--" + marker + eol
        body += eol.join(h.encode("utf-8", "surrogatepass") for h in part.headers) + eol + eol
        body += part.value + eol
    if defect != "no closing boundary":
        body += b"--" + marker + b"--" + eol
    body = bytes(body)

    content_type: str | None = draw(st.sampled_from(_CLEAN_TYPES)).format(b=boundary)
    if defect == "boundary mismatch":
        content_type = f"multipart/form-data; boundary=other{boundary}"
    elif defect == "no boundary":
        content_type = "multipart/form-data"
    elif defect == "url-encoded":
        content_type = "application/x-www-form-urlencoded"
    elif defect == "text/plain":
        content_type = "text/plain"
    elif defect == "no content type":
        content_type = None
    mode = {"truncated": "truncated", "short content-length": "short-length"}.get(defect or "")
    mode = mode or draw(st.sampled_from(["length", "length", "length", "chunked"]))
    cut = draw(st.integers(0, max(0, len(body) - 1))) if body else 0
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "User-Agent: rdio-fuzz"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if draw(st.booleans()):
        head.append("Accept: application/json")
    if mode == "chunked":
        head.append("Transfer-Encoding: chunked")
    elif mode == "short-length":
        head.append(f"Content-Length: {cut}")
    else:
        head.append(f"Content-Length: {len(body)}")
    chunks = draw(st.lists(st.integers(1, 70_000), max_size=6)) if mode == "chunked" else []
    return Request(path, head, body, mode, chunks, cut, items, content_type, defect)


# --- sending and checking -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: the connection closed or hung without a status line
    headers: dict[str, str]
    body: bytes
    error: str | None = None


def _parse(data: bytes) -> Answer | None:
    """The answer once it is complete (its Content-Length read), else None."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = headers.get("content-length", "")
    if not length.isdigit() or len(body) < int(length):
        return None
    status = lines[0].split()
    if not head.startswith(b"HTTP/") or len(status) < 2 or not status[1].isdigit():
        return Answer(None, {}, data, f"not an HTTP answer: {data[:100]!r}")
    return Answer(int(status[1]), headers, body[: int(length)])


def send(port: int, request: Request) -> Answer:
    """Send on one thread and read on this one, as curl does: a server may answer (413, 401, 400)
    before it has read the whole body, and then stops reading it."""
    data = bytearray()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT)
    except OSError as exc:
        return Answer(None, {}, b"", f"cannot connect: {exc}")

    def push() -> None:
        try:
            for piece in request.raw():
                sock.sendall(piece)
            if request.mode == "truncated":
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered early and closed, or this side closed after the answer

    sender = threading.Thread(target=push, daemon=True)
    sender.start()
    try:
        while (answer := _parse(bytes(data))) is None:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        return Answer(None, {}, bytes(data), f"no answer within {ANSWER_TIMEOUT}s")
    except OSError as exc:
        if not data:
            return Answer(None, {}, b"", f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a sender blocked on a server that stopped reading
        sock.close()
        sender.join(5)
    answer = _parse(bytes(data))
    if answer is None:
        return Answer(None, {}, bytes(data), f"connection closed after {len(data)} bytes without an answer")
    return answer


def _key_parts(request: Request) -> list[str]:
    return [p.value.decode("utf-8", "replace").strip() for p in request.parts if p.name == "key"]


def check(fuzz: UploadFuzz, request: Request, answer: Answer) -> list[str]:
    """The properties; returns what was violated."""
    problems: list[str] = []
    route = f"POST {request.path}"
    if answer.status is None:
        fuzz.tally.record_transport_error(route, f"{answer.error}\n{request.describe()}")
        if request.complete:
            problems.append(f"no answer: {answer.error}")
        return problems
    fuzz.tally.record(route, answer.status, request.describe())
    text = answer.body.decode("utf-8", "replace")
    if answer.status >= 500:
        problems.append(f"{answer.status} {text[:200]}")
    if answer.status == 200:
        if not set(_key_parts(request)) & UPLOAD_KEYS:
            problems.append(f"200 without a valid upload key (key parts {_key_parts(request)!r})")
        if "X-Call-Id".lower() in answer.headers:
            problems += _check_stored(fuzz, request, int(answer.headers["x-call-id"]))
        elif SUCCESS in text:
            problems.append("success without X-Call-Id")
    return problems


def _check_stored(fuzz: UploadFuzz, request: Request, call_id: int) -> list[str]:
    fuzz.accepted += 1
    url = fuzz.server.url
    row = httpx.get(f"{url}/api/calls/{call_id}", headers=admin_headers(), timeout=30)
    if row.status_code != 200:
        return [f"accepted call {call_id} not readable: {row.status_code} {row.text[:200]}"]
    audio = httpx.get(f"{url}/api/calls/{call_id}/audio", headers=admin_headers(), timeout=30)
    if audio.status_code != 200:
        return [f"accepted call {call_id} has no audio: {audio.status_code} {audio.text[:200]}"]
    sent = [p.value for p in request.parts if p.name == "audio"]
    if audio.content not in sent:
        return [f"call {call_id} audio ({len(audio.content)} B) is none of the parts sent"]
    return []


def _run(fuzz: UploadFuzz, request: Request) -> None:
    note(request.describe())
    problems = check(fuzz, request, send(fuzz.server.port, request))
    if not problems:
        return
    report = "; ".join(problems) + "\n" + request.describe()
    fuzz.violations.append(report)
    if not COLLECT:
        raise AssertionError(report)


@given(requests("/api/call-upload", "rdio"))
@fuzz_settings(300)
def test_call_upload_fuzz(upload_fuzz: UploadFuzz, request: Request) -> None:
    _run(upload_fuzz, request)


@given(requests("/api/trunk-recorder-call-upload", "trunk-recorder"))
@fuzz_settings(300)
def test_trunk_recorder_upload_fuzz(upload_fuzz: UploadFuzz, request: Request) -> None:
    _run(upload_fuzz, request)


def test_upload_fuzz_counts_have_no_server_error(upload_fuzz: UploadFuzz) -> None:
    """The figures for the note, and every violation with the server's tracebacks."""
    tally = upload_fuzz.tally
    print(tally.summary(), f"\n  accepted and read back: {upload_fuzz.accepted}")
    tally.write()
    (tally.path.parent / "violations.txt").write_text("\n\n".join(upload_fuzz.violations))
    found = tracebacks(upload_fuzz.server.log())
    assert tally.total >= 100, tally.summary()
    assert upload_fuzz.accepted > 0, "no fuzzed upload was accepted: the generators only hit the front door"
    assert not upload_fuzz.violations and not found, "\n\n".join(upload_fuzz.violations[:30] + found[:10])
