"""Synthesised dispatch tones for tests/test_tones.py, tests/test_analyze.py and bench/tones.py.

Signals are built at 8 kHz (what SDRTrunk and trunk-recorder record), mixed with corpus speech or
white noise at a given SNR, and can go through the same codec as an SDRTrunk upload (MP3 16 kbps,
8 kHz) and back through the worker's decoder (16 kHz), so tests see what the worker sees.
"""

from __future__ import annotations

import csv
import io
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from rdio_tasks.audio_decode import decode_audio

RATE = 8000  # radio recordings
WORKER_RATE = 16000  # what decode_audio hands the detector and Whisper
LEVEL_DBFS = -10.0  # tone RMS
CORPUS = Path(__file__).resolve().parent / "corpus"

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


@dataclass(frozen=True)
class Expected:
    """A tone as it was synthesised: what the detector should report."""

    kind: str
    frequencies: tuple[float, ...]
    start: float
    end: float
    digits: str | None = None


def tone(hz: float, seconds: float, level_dbfs: float = LEVEL_DBFS, rate: int = RATE) -> np.ndarray:
    """A sine at ``level_dbfs`` RMS with 5 ms raised-cosine ramps (as encoders shape them)."""
    n = round(seconds * rate)
    y = np.sqrt(2) * 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * hz * np.arange(n) / rate)
    ramp = min(n // 2, int(0.005 * rate))
    if ramp:
        shape = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        y[:ramp] *= shape
        y[-ramp:] *= shape[::-1]
    return y


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate))


def two_tone(a: float, b: float, a_seconds: float = 1.0, b_seconds: float = 3.0) -> np.ndarray:
    return np.concatenate([tone(a, a_seconds), tone(b, b_seconds)])


def hi_low(high: float, low: float, half: float = 0.25, cycles: int = 4) -> np.ndarray:
    return np.concatenate([tone(f, half) for _ in range(cycles) for f in (high, low)])


def dtmf(digits: str, on: float = 0.1, off: float = 0.08) -> np.ndarray:
    parts = []
    for key in digits:
        row = next(i for i, keys in enumerate(DTMF_KEYS) if key in keys)
        col = DTMF_KEYS[row].index(key)
        # Each tone 3 dB under the level, so the pair has the level of one tone.
        pair = tone(DTMF_ROWS[row], on, LEVEL_DBFS - 3) + tone(DTMF_COLS[col], on, LEVEL_DBFS - 3)
        parts += [pair, silence(off)]
    return np.concatenate(parts[:-1])


def page(kind: str, lead: float = 0.5) -> tuple[np.ndarray, Expected]:
    """A standard page of ``kind`` after ``lead`` seconds of silence, and what it is."""
    if kind == "two_tone":
        sig, exp = two_tone(1002.3, 1270.7), Expected("two_tone", (1002.3, 1270.7), 0, 4.0)
    elif kind == "long":
        sig, exp = tone(853.2, 4.0), Expected("long", (853.2,), 0, 4.0)
    elif kind == "hi_low":
        sig, exp = hi_low(1500.0, 1000.0), Expected("hi_low", (1500.0, 1000.0), 0, 2.0)
    elif kind == "dtmf":
        sig = dtmf("1590#")
        exp = Expected("dtmf", (697, 1209, 770, 1336, 852, 1477, 941, 1336, 941, 1477), 0, 0.82, "1590#")
    else:
        raise ValueError(kind)
    return np.concatenate([silence(lead), sig]), Expected(
        exp.kind, exp.frequencies, lead + exp.start, lead + exp.end, exp.digits
    )


def corpus_files(subset: str | None = None) -> list[tuple[Path, str]]:
    """(path, subset) of the corpus clips, of one subset or all."""
    with (CORPUS / "manifest.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(CORPUS / r["file"], r["subset"]) for r in rows if subset is None or r["subset"] == subset]


def speech(name: str = "jfk_radio.mp3") -> np.ndarray:
    """A corpus speech clip at 8 kHz, its active level (20 ms frames within 30 dB of the loudest)
    set to ``LEVEL_DBFS``: a dispatcher's voice and tones reach the receiver at about one level,
    so an SNR given for the tones holds for the speech too."""
    x = decode_audio(CORPUS / "audio" / name, RATE).astype(np.float64)
    frames = x[: x.size // 160 * 160].reshape(-1, 160)
    power = np.mean(frames**2, axis=1)
    active = power[power >= power.max() / 1000]
    return x * 10 ** (LEVEL_DBFS / 20) / np.sqrt(np.mean(active))


def with_noise(signal: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """``signal`` plus white noise ``snr_db`` below ``LEVEL_DBFS`` (the tones' level), over the
    whole 0-4 kHz band; None adds nothing."""
    if snr_db is None:
        return signal
    rng = np.random.default_rng(seed)
    noise_rms = 10 ** ((LEVEL_DBFS - snr_db) / 20)
    return signal + rng.standard_normal(signal.size) * noise_rms


def mp3(signal: np.ndarray, rate: int = RATE) -> bytes:
    """``signal`` as SDRTrunk uploads it: MP3, 16 kbps CBR, mono."""
    import av

    pcm = np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.bit_rate = 16000
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def wav(signal: np.ndarray, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16).tobytes())
    return out.getvalue()


def through_mp3(signal: np.ndarray, tmp: Path) -> np.ndarray:
    """What the worker decodes from an MP3 upload of ``signal``: float32 at 16 kHz."""
    path = tmp / "call.mp3"
    path.write_bytes(mp3(signal))
    return decode_audio(path, WORKER_RATE)
