"""Duration limits hold on the decoded audio, not only on what the header claims (issue 13, item 3).

A FLAC whose STREAMINFO says ``total_samples=0`` ("unknown") gives the API no duration to check:
656 KB of 1 h silence was accepted and the worker decoded all of it (peak RSS 532 MB).
"""

from __future__ import annotations

import io
import re
import struct
import tracemalloc

import av
import httpx
import numpy as np
import pytest

from rdio_core.audio_probe import probe
from rdio_tasks.audio_decode import LENGTH_TOLERANCE_SECONDS, decode_audio
from rdio_tasks.errors import AudioTooLongError, PermanentError
from tests.conftest import ADMIN_KEY, base_config
from tests.helpers import CLIPS, ServerProcess, raw_request, sdrtrunk_body
from tests.stack import ADMIN, Stack
from tests.test_upload import fresh_system, post, sdrtrunk_fields

STREAMINFO_TOTAL_SAMPLES = 18  # "fLaC" + block header (4) + 10 bytes into STREAMINFO
TOTAL_SAMPLES_MASK = (1 << 36) - 1  # the low 36 bits of the big-endian 64-bit word there


def silent_flac(seconds: int, rate: int = 8000, hide_length: bool = True) -> bytes:
    """``seconds`` of 16-bit mono silence as FLAC; ``hide_length`` zeroes STREAMINFO's total samples."""
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        second = np.zeros((1, rate), np.int16)
        for i in range(seconds):
            frame = av.AudioFrame.from_ndarray(second, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, i * rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(out.getvalue())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must be the first block"
    (word,) = struct.unpack_from(">Q", data, STREAMINFO_TOTAL_SAMPLES)
    assert word & TOTAL_SAMPLES_MASK == seconds * rate
    if hide_length:
        struct.pack_into(">Q", data, STREAMINFO_TOTAL_SAMPLES, word & ~TOTAL_SAMPLES_MASK)
    return bytes(data)


@pytest.fixture(scope="module")
def hour_flac(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("flac") / "silence_1h.flac"
    path.write_bytes(silent_flac(3600))
    return str(path)


def test_the_header_gives_no_duration(hour_flac):
    data = open(hour_flac, "rb").read()  # noqa: SIM115 - a one-off read
    assert len(data) < 700_000
    assert probe(data).kind == "flac" and probe(data).duration_seconds is None


def test_decode_stops_at_the_limit(hour_flac):
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(hour_flac, 16000, max_seconds=60)
    err = caught.value
    assert isinstance(err, PermanentError)
    assert err.limit_seconds == 60
    assert 60 + LENGTH_TOLERANCE_SECONDS < err.decoded_seconds < 61  # stopped within a frame of it
    assert f"audio too long: decoding stopped at {err.decoded_seconds:.1f}s, over the 60s limit" in str(err)


def test_limit_tolerates_codec_padding_only(tmp_path):
    path = tmp_path / "ten.flac"
    path.write_bytes(silent_flac(10))
    assert decode_audio(path, 16000).size == 160_000
    assert decode_audio(path, 16000, max_seconds=10).size == 160_000
    assert decode_audio(path, 16000, max_seconds=10 - LENGTH_TOLERANCE_SECONDS).size == 160_000
    with pytest.raises(AudioTooLongError):
        decode_audio(path, 16000, max_seconds=9)


def test_decode_memory_is_bounded_by_the_limit(hour_flac):
    """Python-side allocations (numpy's included) during the decode: the whole hour was 474 MB
    (chunks plus their concatenation); with a 60 s limit the peak is the 60.5 s buffer, 3.9 MB."""
    decode_audio(CLIPS / "speech.wav", 16000)  # PyAV's one-time set-up is not the decode's cost
    limit_bytes = (60 + LENGTH_TOLERANCE_SECONDS) * 16000 * 4
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLongError):
            decode_audio(hour_flac, 16000, max_seconds=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit_bytes + 1_000_000, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.worker
def test_hidden_length_upload_is_skipped_by_the_worker(tmp_path, database_url):
    """Through the real stack: accepted with no duration, then skipped on the decoded length."""
    # The skip happens before any model is needed: no preload keeps the worker start cheap.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RDIO_WORKER_PRELOAD", "0")
        stack = Stack(tmp_path, database_url, max_audio_seconds=5).start()
    try:
        body = sdrtrunk_body(
            sdrtrunk_fields(fresh_system(), key=ADMIN), silent_flac(20), filename="call.flac"
        )
        status, headers, text = raw_request(stack.server.port, body)
        assert status.startswith("HTTP/1.1 200"), (status, text)
        call_id = int(headers["x-call-id"])
        assert stack.get(f"/api/calls/{call_id}").json()["duration_seconds"] is None
        job = stack.wait_call(call_id, timeout=60)["latest_job"]
        assert job["status"] == "skipped" and job["attempts"] == 1, stack.logs()
        assert re.fullmatch(
            r"audio too long: 5\.[5-9]s decoded > max_audio_seconds 5\.0 \(decoding stopped there\)",
            job["error"],
        ), job
    finally:
        stack.stop()


# -- headers that lie (issue 25, item 2) ---------------------------------------------------------------

SPEECH_SECONDS = 46798 / 16000  # speech.wav: 46,798 bytes of 8 kHz 16-bit mono in its data chunk
TEN_HOURS = 10 * 3600


def lying_wav(claimed_bytes: int) -> bytes:
    """speech.wav with its data chunk (and the RIFF size) claiming ``claimed_bytes``."""
    data = bytearray((CLIPS / "speech.wav").read_bytes())
    assert data[36:40] == b"data" and struct.unpack_from("<I", data, 40)[0] == 46798
    struct.pack_into("<I", data, 40, claimed_bytes)
    struct.pack_into("<I", data, 4, min(claimed_bytes + 36, 0xFFFFFFFF))
    return bytes(data)


def lying_flac(claimed_seconds: int) -> bytes:
    """speech.flac with STREAMINFO's total samples claiming ``claimed_seconds``."""
    data = bytearray((CLIPS / "speech.flac").read_bytes())
    (word,) = struct.unpack_from(">Q", data, STREAMINFO_TOTAL_SAMPLES)
    rate = word >> 44  # the top 20 bits of the same word
    struct.pack_into(
        ">Q", data, STREAMINFO_TOTAL_SAMPLES, (word & ~TOTAL_SAMPLES_MASK) | (claimed_seconds * rate)
    )
    return bytes(data)


@pytest.fixture(scope="module")
def unbrokered_server(tmp_path_factory, database_url):
    """Transcription on, a broker nobody answers on: each call's job stays as the upload left it."""
    work = tmp_path_factory.mktemp("lying-headers")
    config = base_config(work / "data", database_url, broker_url="redis://127.0.0.1:9/0")
    config["transcription"] = {"enabled": True, "min_audio_seconds": 0.5, "max_audio_seconds": 900}
    server = ServerProcess(work, config).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("audio", "filename", "stored_seconds"),
    [
        (lying_wav(TEN_HOURS * 16000), "ten_hours.wav", SPEECH_SECONDS),
        (lying_wav(0xFFFFFFFF), "streamed.wav", SPEECH_SECONDS),  # a writer that never came back
        (lying_wav(0), "unfinished.wav", SPEECH_SECONDS),  # FFmpeg reads such a file to its end
        (lying_flac(TEN_HOURS), "ten_hours.flac", None),  # only decoding can tell: the worker will
    ],
    ids=["wav-10h", "wav-ffffffff", "wav-0", "flac-10h"],
)
def test_a_header_that_lies_about_the_length_does_not_skip_the_call(
    unbrokered_server, audio, filename, stored_seconds
):
    """Before: the WAV claiming 10 h was stored as 36,000 s and its job skipped as too long (and the
    one whose size field was 0 was refused, 415); the FLAC was skipped the same way."""
    r = post(unbrokered_server, sdrtrunk_fields(fresh_system()), audio, filename=filename)
    assert r.status_code == 200 and r.text.startswith("Call imported successfully."), r.text
    call_id = int(r.headers["x-call-id"])
    headers = {"X-API-Key": ADMIN_KEY}
    call = httpx.get(f"{unbrokered_server.url}/api/calls/{call_id}", headers=headers).json()
    if stored_seconds is not None:
        assert call["duration_seconds"] == pytest.approx(stored_seconds, abs=0.01)
    job = httpx.get(f"{unbrokered_server.url}/api/calls/{call_id}/transcription", headers=headers).json()
    assert job["latest_job"]["status"] in ("pending", "queued"), job


@pytest.mark.worker
def test_the_worker_corrects_the_stored_duration(tmp_path, database_url):
    """The decoded length replaces what the upload stored: the FLAC claiming 10 h holds 2.9 s."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RDIO_WORKER_PRELOAD", "0")  # the skip below needs no model
        stack = Stack(tmp_path, database_url, min_audio_seconds=5).start()
    try:
        r = post(stack.server, sdrtrunk_fields(fresh_system(), key=ADMIN), lying_flac(TEN_HOURS), "x.flac")
        assert r.status_code == 200, r.text
        call_id = int(r.headers["x-call-id"])
        job = stack.wait_call(call_id, timeout=60)["latest_job"]
        assert job["status"] == "skipped" and "too short: 2.92s" in job["error"], job
        call = stack.get(f"/api/calls/{call_id}").json()
        assert call["duration_seconds"] == pytest.approx(SPEECH_SECONDS, abs=0.05), call
    finally:
        stack.stop()
