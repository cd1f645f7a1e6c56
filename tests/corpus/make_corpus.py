"""Build the small radio-like transcription quality corpus in ``tests/corpus/``.

Why: WhisperX is tuned on clean wideband speech, but rdio-api receives
narrow-band, hissy, compressed scanner audio (SDRTrunk MP3, trunk-recorder
M4A) and plenty of calls with no speech at all (tones, static, squelch tails,
key-ups).  This corpus lets tests measure word error rate on radio-like speech
and check that no-speech calls come back with no text (no hallucinations).

Everything is generated from the shared speech clips (``refs.tsv`` gives the
reference text, source and license) with PyAV + numpy + scipy; no system
``ffmpeg`` is needed.  The output is deterministic: fixed RNG seeds, scipy
polyphase resampling and Butterworth filters, and ``bitexact`` muxer/encoder
flags.

Subsets (``manifest.tsv`` column ``subset``):

* ``radio_mp3``: radio chain, then MP3 16 kbps CBR, 8 kHz mono (SDRTrunk-like).
* ``radio_m4a``: radio chain, then AAC-LC 8 kbps, 8 kHz mono in M4A
  (trunk-recorder runs ``fdkaac -p 2 -b 8000 --moov-before-mdat``).
* ``clean``: original speech, mono, 16 kHz FLAC (or Opus, ``--clean-format``).
* ``no_speech``: synthetic calls with no speech; the expected text is empty.

Radio chain: mix to mono; resample to 8 kHz; set active speech level to
-20 dBFS; band-pass 300-3400 Hz (4th-order Butterworth, causal); add white hiss
20 dB below the active speech level (seeded); compress (threshold -20 dBFS,
3:1, attack 5 ms, release 80 ms, +10 dB make-up); soft-limit with
``0.9 * tanh(x / 0.9)``.

Usage (from the repo root)::

    python tests/corpus/make_corpus.py [SPEECH_DIR] [--clean-format flac|opus]

``SPEECH_DIR`` defaults to ``../shared/speech`` relative to the repo root.
"""

from __future__ import annotations

import argparse
import csv
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEECH_DIR = REPO_ROOT / ".." / "shared" / "speech"
CORPUS_DIR = Path(__file__).resolve().parent
AUDIO_DIR = CORPUS_DIR / "audio"
MANIFEST = CORPUS_DIR / "manifest.tsv"

RADIO_RATE = 8000
CLEAN_RATE = 16000
MP3_BITRATE = 16_000
M4A_BITRATE = 8_000
OPUS_BITRATE = 32_000

# Radio chain parameters (documented in the module docstring and README.md).
ACTIVE_LEVEL_DBFS = -20.0
BAND_HZ = (300.0, 3400.0)
BAND_ORDER = 4
SNR_DB = 20.0
COMP_THRESHOLD_DBFS = -20.0
COMP_RATIO = 3.0
COMP_ATTACK_S = 0.005
COMP_RELEASE_S = 0.080
COMP_MAKEUP_DB = 10.0
LIMIT_CEILING = 0.9

GENERATED_SOURCE = "generated"
GENERATED_LICENSE = "CC0"
DURATION_TOLERANCE_S = 0.15


@dataclass(frozen=True)
class Entry:
    file: str
    subset: str
    reference: str
    duration_s: float
    source: str
    license: str


# --------------------------------------------------------------------------- audio I/O


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """Decode any audio file to a float64 mono signal in [-1, 1] and its rate."""
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            fmt = frame.format
            if not fmt.is_planar:
                data = data.reshape(-1, len(frame.layout.channels)).T
            if fmt.name.startswith("s16"):
                data = data / 32768.0
            elif fmt.name.startswith("s32"):
                data = data / 2147483648.0
            chunks.append(np.asarray(data, dtype=np.float64).mean(axis=0))
    return np.concatenate(chunks), rate


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Deterministic polyphase resampling."""
    if src_rate == dst_rate:
        return x
    ratio = Fraction(dst_rate, src_rate)
    return resample_poly(x, ratio.numerator, ratio.denominator)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def encode(
    pcm: np.ndarray,
    rate: int,
    path: Path,
    codec: str,
    bit_rate: int | None = None,
    fmt: str | None = None,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    """Encode int16 mono ``pcm`` at ``rate`` with ``codec`` into ``path`` (bit-exact)."""
    options = {"flags": "+bitexact", **(codec_options or {})}
    cont_options = {"fflags": "+bitexact", **(container_options or {})}
    with av.open(str(path), "w", format=fmt, container_options=cont_options) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono", options=options)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def encode_mp3(pcm: np.ndarray, path: Path) -> None:
    encode(pcm, RADIO_RATE, path, "libmp3lame", MP3_BITRATE)


def encode_m4a(pcm: np.ndarray, path: Path) -> None:
    encode(
        pcm,
        RADIO_RATE,
        path,
        "aac",
        M4A_BITRATE,
        codec_options={"profile": "aac_low"},
        container_options={"movflags": "+faststart"},
    )


def decoded_duration(path: Path) -> float:
    """Duration from actually decoding every sample with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


# --------------------------------------------------------------------------- DSP


def db_to_lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded from the clip name, stable across runs and platforms."""
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def active_rms(x: np.ndarray, rate: int) -> float:
    """RMS over 20 ms frames within 30 dB of the loudest frame (rough active speech level)."""
    n = int(0.02 * rate)
    frames = x[: len(x) // n * n].reshape(-1, n)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms[rms >= rms.max() * db_to_lin(-30.0)]
    return float(np.sqrt(np.mean(active**2)))


def bandpass(x: np.ndarray, rate: int = RADIO_RATE) -> np.ndarray:
    sos = butter(BAND_ORDER, BAND_HZ, btype="bandpass", fs=rate, output="sos")
    return sosfilt(sos, x)


def compressor_gain(x: np.ndarray, rate: int = RADIO_RATE) -> np.ndarray:
    """Linear gain of a feed-forward peak compressor (incl. make-up) for each sample."""
    att = float(np.exp(-1.0 / (COMP_ATTACK_S * rate)))
    rel = float(np.exp(-1.0 / (COMP_RELEASE_S * rate)))
    env = np.empty_like(x)
    level = 0.0
    for i, v in enumerate(np.abs(x).tolist()):
        coeff = att if v > level else rel
        level = coeff * level + (1.0 - coeff) * v
        env[i] = level
    env_db = 20.0 * np.log10(np.maximum(env, 1e-9))
    over = np.maximum(env_db - COMP_THRESHOLD_DBFS, 0.0)
    gain_db = -over * (1.0 - 1.0 / COMP_RATIO) + COMP_MAKEUP_DB
    return 10.0 ** (gain_db / 20.0)


def limit(x: np.ndarray) -> np.ndarray:
    return LIMIT_CEILING * np.tanh(x / LIMIT_CEILING)


def radio_chain(x: np.ndarray, rate: int, name: str) -> tuple[np.ndarray, float]:
    """Apply the radio chain; return the 8 kHz signal and the SNR after compression."""
    x8 = resample(x, rate, RADIO_RATE)
    x8 = x8 * (db_to_lin(ACTIVE_LEVEL_DBFS) / active_rms(x8, RADIO_RATE))
    speech = bandpass(x8)
    level = active_rms(speech, RADIO_RATE)
    hiss = rng_for(name).standard_normal(len(speech)) * level * db_to_lin(-SNR_DB)
    gain = compressor_gain(speech + hiss)
    out = limit(gain * (speech + hiss))
    # Effective SNR after the (signal-dependent) compression, same gain on both parts.
    snr_after = 20.0 * np.log10(active_rms(gain * speech, RADIO_RATE) / np.sqrt(np.mean((gain * hiss) ** 2)))
    return out, float(snr_after)


def tone(freq: float, seconds: float, level_dbfs: float, rate: int = RADIO_RATE) -> np.ndarray:
    """Sine burst (peak ``level_dbfs``) with 5 ms raised-cosine ramps."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    y = np.sin(2 * np.pi * freq * t) * db_to_lin(level_dbfs)
    ramp_n = int(0.005 * rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp_n) / ramp_n)
    y[:ramp_n] *= ramp
    y[-ramp_n:] *= ramp[::-1]
    return y


def silence(seconds: float, rate: int = RADIO_RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate))


def hiss(name: str, n: int, rms_dbfs: float) -> np.ndarray:
    return rng_for(name).standard_normal(n) * db_to_lin(rms_dbfs)


# --------------------------------------------------------------------------- no-speech clips


def ns_digital_silence() -> np.ndarray:
    return silence(3.0)


def ns_low_hiss() -> np.ndarray:
    return hiss("low_hiss", round(4.0 * RADIO_RATE), -60.0)


def ns_two_tone_page() -> np.ndarray:
    # Sequential two-tone page (Quick Call II style): tone A 1 s, tone B 3 s.
    sig = np.concatenate([silence(0.25), tone(568.1, 1.0, -6.0), tone(1006.9, 3.0, -6.0), silence(0.25)])
    return sig + hiss("two_tone_page", len(sig), -55.0)


def ns_alert_tone_1khz() -> np.ndarray:
    sig = np.concatenate([silence(0.25), tone(1000.0, 1.5, -6.0), silence(0.25)])
    return sig + hiss("alert_tone_1khz", len(sig), -55.0)


def ns_static_burst() -> np.ndarray:
    noise = bandpass(hiss("static_burst", round(2.0 * RADIO_RATE), -3.0))
    return limit(noise * 2.0)


def ns_squelch_tail() -> np.ndarray:
    # 1 s of near silence, then a 0.2 s noise burst decaying ~40 dB, then 0.3 s quiet.
    lead, burst_n, tail = silence(1.0), round(0.2 * RADIO_RATE), silence(0.3)
    envelope = np.exp(-np.arange(burst_n) / (0.04 * RADIO_RATE))
    burst = bandpass(hiss("squelch_burst", burst_n, -8.0)) * envelope
    sig = np.concatenate([lead, burst, tail])
    return sig + hiss("squelch_floor", len(sig), -70.0)


def ns_keyup() -> np.ndarray:
    # 0.4 s: a carrier click (DC step + ringing) followed by faded carrier noise.
    n = round(0.4 * RADIO_RATE)
    t = np.arange(n) / RADIO_RATE
    click = 0.5 * np.exp(-t / 0.004) * np.cos(2 * np.pi * 180.0 * t)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.03 * RADIO_RATE))
    noise = bandpass(hiss("keyup", n, -30.0)) * fade
    return limit(click + noise)


NO_SPEECH: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "digital_silence": (ns_digital_silence, "3 s of digital silence (all zeros)"),
    "low_hiss": (ns_low_hiss, "4 s of white hiss at -60 dBFS RMS"),
    "two_tone_page": (ns_two_tone_page, "two-tone sequential page: 568.1 Hz 1 s + 1006.9 Hz 3 s"),
    "alert_tone_1khz": (ns_alert_tone_1khz, "1 kHz alert tone 1.5 s, -6 dBFS"),
    "static_burst": (ns_static_burst, "2 s loud band-passed static, soft-limited"),
    "squelch_tail": (ns_squelch_tail, "1 s quiet then a 0.2 s decaying noise burst"),
    "keyup": (ns_keyup, "0.4 s key-up: carrier click + carrier noise"),
}


# --------------------------------------------------------------------------- build


def load_refs(speech_dir: Path) -> list[dict[str, str]]:
    with open(speech_dir / "refs.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def build(speech_dir: Path, clean_format: str) -> tuple[list[Entry], dict[str, float]]:
    AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    for old in AUDIO_DIR.iterdir():  # drop stale outputs (e.g. after --clean-format change)
        if old.is_file():
            old.unlink()
    entries: list[Entry] = []
    snrs: dict[str, float] = {}
    for ref in load_refs(speech_dir):
        stem = Path(ref["file"]).stem
        x, rate = read_mono(speech_dir / ref["file"])
        radio, snrs[stem] = radio_chain(x, rate, stem)
        pcm = to_int16(radio)
        dur = round(len(pcm) / RADIO_RATE, 3)
        meta = (ref["reference"], dur, ref["source"], ref["license"])
        encode_mp3(pcm, AUDIO_DIR / f"{stem}_radio.mp3")
        entries.append(Entry(f"audio/{stem}_radio.mp3", "radio_mp3", *meta))
        encode_m4a(pcm, AUDIO_DIR / f"{stem}_radio.m4a")
        entries.append(Entry(f"audio/{stem}_radio.m4a", "radio_m4a", *meta))

        clean = to_int16(resample(x, rate, CLEAN_RATE))
        dur16 = round(len(clean) / CLEAN_RATE, 3)
        name = f"{stem}_clean.{clean_format}"
        if clean_format == "flac":
            encode(clean, CLEAN_RATE, AUDIO_DIR / name, "flac")
        else:
            encode(clean, CLEAN_RATE, AUDIO_DIR / name, "libopus", OPUS_BITRATE, fmt="ogg")
        entries.append(
            Entry(f"audio/{name}", "clean", ref["reference"], dur16, ref["source"], ref["license"])
        )

    for key, (make, desc) in NO_SPEECH.items():
        pcm = to_int16(make())
        encode_mp3(pcm, AUDIO_DIR / f"nospeech_{key}.mp3")
        dur = round(len(pcm) / RADIO_RATE, 3)
        print(f"nospeech_{key}.mp3: {desc}")
        entries.append(
            Entry(f"audio/nospeech_{key}.mp3", "no_speech", "", dur, GENERATED_SOURCE, GENERATED_LICENSE)
        )
    return entries, snrs


def write_manifest(entries: list[Entry]) -> None:
    with open(MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "subset", "reference", "duration_s", "source", "license"])
        for e in entries:
            writer.writerow([e.file, e.subset, e.reference, f"{e.duration_s:.3f}", e.source, e.license])


def verify(entries: list[Entry], snrs: dict[str, float]) -> bool:
    ok = True
    print(f"{'file':<44}{'subset':<11}{'bytes':>8}{'manifest_s':>11}{'decoded_s':>10}  status")
    for e in entries:
        path = CORPUS_DIR / e.file
        try:
            got = decoded_duration(path)
            # AAC decodes whole 1024-sample frames: up to 0.128 s of padding at 8 kHz.
            good = abs(got - e.duration_s) <= DURATION_TOLERANCE_S
        except av.FFmpegError as exc:
            got, good = float("nan"), False
            print(f"{e.file}: decode error {exc}", file=sys.stderr)
        ok &= good
        print(
            f"{e.file:<44}{e.subset:<11}{path.stat().st_size:>8}{e.duration_s:>11.3f}{got:>10.3f}"
            f"  {'ok' if good else 'FAIL'}"
        )
    total = sum(p.stat().st_size for p in AUDIO_DIR.iterdir())
    print(f"audio/ total: {total} bytes in {len(list(AUDIO_DIR.iterdir()))} files")
    print("SNR after compression (dB): " + ", ".join(f"{k} {v:.1f}" for k, v in snrs.items()))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("speech_dir", nargs="?", type=Path, default=DEFAULT_SPEECH_DIR)
    parser.add_argument("--clean-format", choices=("flac", "opus"), default="flac")
    args = parser.parse_args()
    entries, snrs = build(args.speech_dir.resolve(), args.clean_format)
    write_manifest(entries)
    return 0 if verify(entries, snrs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
