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
import numpy as np
import pytest

from rdio_core.audio_probe import probe
from rdio_tasks.audio_decode import LENGTH_TOLERANCE_SECONDS, decode_audio
from rdio_tasks.errors import AudioTooLongError, PermanentError
from tests.helpers import CLIPS, raw_request, sdrtrunk_body
from tests.stack import ADMIN, Stack
from tests.test_upload import fresh_system, sdrtrunk_fields

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
