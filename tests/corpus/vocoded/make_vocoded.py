"""Build the vocoded (digital-radio-like) evaluation corpus in ``tests/corpus/vocoded/``.

Why: a P25/DMR call is speech that went through a low-rate vocoder (IMBE/AMBE at 2.4-4.4 kbps)
and then through the recorder's own encoder (SDRTrunk's MP3, trunk-recorder's 8 kHz WAV). The
first corpus (``tests/corpus``) only band-passes and compresses synthetic-free speech; on it the
radio pipeline looked as good as plain WhisperX while on real P25 calls it cost words (issue 23:
WER 0.498 against plain's 0.466, the default VAD dropping weak call endings). No IMBE/AMBE
implementation with a usable licence is packaged, so the vocoder here is Codec2 (Debian
``codec2``: ``c2enc``/``c2dec``, LGPL-2.1, used as a build tool only; its 3200 and 2400 bit/s
modes are the nearest to IMBE's 4400 bit/s voice rate).

Speech calls (human speech from ``shared/speech``, references and licences in its ``refs.tsv``),
two recipes per source clip, each written twice:

* ``fade``: mic level -20 dBFS active, cab noise (pink) 24 dB below, Codec2 3200, and a weak
  call ending: the last 40 % of the speech falls to -20 dB (a talker trailing off or turning
  away from the mic), the case the default VAD drops.
* ``noisy``: talker 8 dB quieter (-28 dBFS active), pink-plus-rumble cab noise 12 dB below
  the speech, Codec2 2400.

Every call gets 0.2 s of vocoded background before the speech (the PTT key-up) and 0.3 s after.
Outputs: ``p25_mp3`` (SDRTrunk-like: LAME MP3 16 kbps CBR, 8 kHz mono) and ``p25_wav``
(trunk-recorder-like: 8 kHz 16-bit PCM WAV).

No-speech calls (generated, CC0; the expected transcript is empty): vocoded open-mic cab noise,
vocoded alert and two-tone page tones, Codec2 frames with random bits (what a P25 decoder makes
of a corrupted voice frame: a warbling, speech-like babble), an AFSK data burst (MDC1200-like,
1200/1800 Hz), an analog squelch tail, a carrier with hum, and a vocoded key-up click.

Usage, from the repo root (needs ``apt-get install codec2``, PyAV, numpy, scipy)::

    python tests/corpus/vocoded/make_vocoded.py [SPEECH_DIR]

Deterministic: fixed seeds, scipy resampling, Codec2 is bit-exact, FFmpeg ``bitexact`` flags.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from make_corpus import (  # noqa: E402  (the first corpus's audio helpers, one definition)
    RADIO_RATE,
    active_rms,
    bandpass,
    db_to_lin,
    decoded_duration,
    encode,
    encode_mp3,
    limit,
    load_refs,
    read_mono,
    resample,
    rng_for,
    silence,
    to_int16,
    tone,
)

REPO_ROOT = HERE.parents[2]
DEFAULT_SPEECH_DIR = REPO_ROOT / ".." / "shared" / "speech"
AUDIO_DIR = HERE / "audio"
MANIFEST = HERE / "manifest.tsv"
GENERATED = ("generated", "CC0")
LEAD_S, TAIL_S = 0.2, 0.3


@dataclass(frozen=True)
class Recipe:
    """How one speech call is made from a clean clip."""

    name: str
    level_dbfs: float  # active speech level into the vocoder
    noise_db: float  # cab noise level relative to the active speech level
    rumble: bool  # add low-frequency engine rumble to the noise
    mode: str  # Codec2 mode (bit/s)
    fade_db: float  # gain at the end of the call (0: no weak ending)
    fade_share: float  # share of the speech over which the gain falls


RECIPES = (
    Recipe("fade", -20.0, -24.0, False, "3200", -20.0, 0.4),
    Recipe("noisy", -28.0, -12.0, True, "2400", 0.0, 0.0),
)


@dataclass(frozen=True)
class Entry:
    file: str
    subset: str
    reference: str
    duration_s: float
    source: str
    license: str
    chain: str


# --------------------------------------------------------------------------- signal parts


def pink(name: str, n: int, rms: float) -> np.ndarray:
    """Pink (1/f power) noise of the given RMS, shaped in the frequency domain."""
    white = np.fft.rfft(rng_for(name).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RADIO_RATE)
    white[1:] /= np.sqrt(f[1:] / f[1])
    white[0] = 0
    x = np.fft.irfft(white, n)
    return x * (rms / max(float(np.sqrt(np.mean(x**2))), 1e-12))


def cab_noise(name: str, n: int, rms: float, rumble: bool) -> np.ndarray:
    noise = pink(name, n, rms)
    if rumble:  # engine: 35 Hz fundamental and harmonics, wobbling
        t = np.arange(n) / RADIO_RATE
        wobble = 1 + 0.3 * np.sin(2 * np.pi * 0.7 * t)
        engine = sum(np.sin(2 * np.pi * 35 * k * t * 1.0) / k for k in range(1, 6)) * wobble
        noise = noise + engine * rms / np.sqrt(np.mean(engine**2))
    return noise


def vocode(x: np.ndarray, mode: str) -> np.ndarray:
    """Codec2 encode + decode of 8 kHz float audio (clipped to 16 bit) through c2enc/c2dec."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, bits, out = Path(tmp, "in.raw"), Path(tmp, "bits.c2"), Path(tmp, "out.raw")
        to_int16(x).tofile(raw)
        subprocess.run(["c2enc", mode, str(raw), str(bits)], check=True, capture_output=True)
        subprocess.run(["c2dec", mode, str(bits), str(out)], check=True, capture_output=True)
        y = np.fromfile(out, dtype=np.int16).astype(np.float64) / 32768.0
    return y[: len(x)]


def random_frames(name: str, seconds: float, mode: str = "3200") -> np.ndarray:
    """Codec2 decode of random bits: a corrupted voice channel's babble (no words in it)."""
    frame_bytes, frame_s = {"3200": (8, 0.02), "2400": (6, 0.02)}[mode]
    count = round(seconds / frame_s)
    payload = rng_for(name).integers(0, 256, count * frame_bytes, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        bits, out = Path(tmp, "bits.bin"), Path(tmp, "out.raw")
        payload.tofile(bits)
        subprocess.run(["c2dec", mode, str(bits), str(out)], check=True, capture_output=True)
        return np.fromfile(out, dtype=np.int16).astype(np.float64) / 32768.0 * db_to_lin(-6)


def speech_call(x: np.ndarray, rate: int, stem: str, recipe: Recipe) -> np.ndarray:
    speech = resample(x, rate, RADIO_RATE)
    speech = speech * (db_to_lin(recipe.level_dbfs) / active_rms(speech, RADIO_RATE))
    if recipe.fade_db:
        n = len(speech)
        start = int(n * (1 - recipe.fade_share))
        gain_db = np.zeros(n)
        gain_db[start:] = np.linspace(0.0, recipe.fade_db, n - start)
        speech = speech * 10 ** (gain_db / 20)
    lead, tail = round(LEAD_S * RADIO_RATE), round(TAIL_S * RADIO_RATE)
    padded = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    level = db_to_lin(recipe.level_dbfs + recipe.noise_db)
    noisy = padded + cab_noise(f"{stem}_{recipe.name}", len(padded), level, recipe.rumble)
    return limit(vocode(noisy, recipe.mode))


# --------------------------------------------------------------------------- no-speech calls


def ns_open_mic() -> np.ndarray:
    return vocode(cab_noise("open_mic", 3 * RADIO_RATE, db_to_lin(-35), True), "3200")


def ns_alert_tone() -> np.ndarray:
    sig = np.concatenate([silence(0.2), tone(1000.0, 1.5, -10.0), silence(0.3)])
    return vocode(sig + pink("alert_noise", len(sig), db_to_lin(-50)), "3200")


def ns_two_tone_page() -> np.ndarray:
    sig = np.concatenate([silence(0.2), tone(688.0, 1.0, -10.0), tone(1150.0, 3.0, -10.0), silence(0.2)])
    return vocode(sig + pink("page_noise", len(sig), db_to_lin(-50)), "3200")


def ns_corrupt_voice() -> np.ndarray:
    return random_frames("corrupt_voice", 2.0)


def ns_data_burst() -> np.ndarray:
    """AFSK 1200 baud, mark 1200 Hz / space 1800 Hz, random bits, 0.6 s, like an MDC1200 ANI."""
    bits = rng_for("data_burst").integers(0, 2, 720)
    freq = np.repeat(np.where(bits == 1, 1200.0, 1800.0), RADIO_RATE // 1200 + 1)[: int(0.6 * RADIO_RATE)]
    phase = 2 * np.pi * np.cumsum(freq) / RADIO_RATE
    burst = 0.3 * np.sin(phase)
    sig = np.concatenate([silence(0.3), burst, silence(0.3)])
    return sig + pink("burst_noise", len(sig), db_to_lin(-45))


def ns_squelch_tail() -> np.ndarray:
    n = round(0.3 * RADIO_RATE)
    burst = bandpass(rng_for("tail").standard_normal(n) * db_to_lin(-10)) * np.exp(
        -np.arange(n) / (0.06 * RADIO_RATE)
    )
    sig = np.concatenate([silence(0.8), burst, silence(0.2)])
    return sig + pink("tail_floor", len(sig), db_to_lin(-65))


def ns_carrier_hum() -> np.ndarray:
    """An unmodulated carrier: receiver hiss with 60 Hz hum and its harmonics, 3 s."""
    n = 3 * RADIO_RATE
    t = np.arange(n) / RADIO_RATE
    hum = sum(np.sin(2 * np.pi * 60 * k * t) * db_to_lin(-30 - 4 * k) for k in (1, 2, 3, 5))
    return hum + bandpass(rng_for("carrier").standard_normal(n) * db_to_lin(-40))


def ns_keyup() -> np.ndarray:
    n = round(0.6 * RADIO_RATE)
    t = np.arange(n) / RADIO_RATE
    click = 0.4 * np.exp(-t / 0.005) * np.cos(2 * np.pi * 200 * t)
    return vocode(click + pink("keyup", n, db_to_lin(-45)), "3200")


NO_SPEECH: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "open_mic": (ns_open_mic, "3 s cab noise at -35 dBFS, Codec2 3200"),
    "alert_tone": (ns_alert_tone, "1 kHz alert tone 1.5 s, Codec2 3200"),
    "two_tone_page": (ns_two_tone_page, "688 Hz 1 s + 1150 Hz 3 s page, Codec2 3200"),
    "corrupt_voice": (ns_corrupt_voice, "2 s of Codec2 3200 frames with random bits"),
    "data_burst": (ns_data_burst, "0.6 s AFSK 1200 baud data burst"),
    "squelch_tail": (ns_squelch_tail, "0.8 s quiet, 0.3 s decaying noise burst"),
    "carrier_hum": (ns_carrier_hum, "3 s carrier: hiss with 60 Hz hum"),
    "keyup": (ns_keyup, "0.6 s key-up click, Codec2 3200"),
}


# --------------------------------------------------------------------------- build


def write_wav(pcm: np.ndarray, path: Path) -> None:
    encode(pcm, RADIO_RATE, path, "pcm_s16le", fmt="wav")


def build(speech_dir: Path) -> list[Entry]:
    if AUDIO_DIR.exists():
        shutil.rmtree(AUDIO_DIR)
    AUDIO_DIR.mkdir(parents=True)
    entries: list[Entry] = []
    for ref in load_refs(speech_dir):
        stem = Path(ref["file"]).stem
        x, rate = read_mono(speech_dir / ref["file"])
        for recipe in RECIPES:
            pcm = to_int16(speech_call(x, rate, stem, recipe))
            dur = round(len(pcm) / RADIO_RATE, 3)
            chain = f"codec2 {recipe.mode}, {recipe.name}"
            for subset, ext, write in (("p25_mp3", "mp3", encode_mp3), ("p25_wav", "wav", write_wav)):
                name = f"{stem}_{recipe.name}.{ext}"
                write(pcm, AUDIO_DIR / name)
                entries.append(
                    Entry(
                        f"audio/{name}",
                        subset,
                        ref["reference"],
                        dur,
                        ref["source"],
                        ref["license"],
                        chain,
                    )
                )
    for key, (make, desc) in NO_SPEECH.items():
        pcm = to_int16(make())
        name = f"nospeech_{key}.wav"
        write_wav(pcm, AUDIO_DIR / name)
        entries.append(
            Entry(f"audio/{name}", "no_speech", "", round(len(pcm) / RADIO_RATE, 3), *GENERATED, desc)
        )
    return entries


def write_manifest(entries: list[Entry]) -> None:
    with open(MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "subset", "reference", "duration_s", "source", "license", "chain"])
        for e in entries:
            writer.writerow(
                [e.file, e.subset, e.reference, f"{e.duration_s:.3f}", e.source, e.license, e.chain]
            )


def verify(entries: list[Entry]) -> bool:
    ok = True
    for e in entries:
        got = decoded_duration(HERE / e.file)
        good = abs(got - e.duration_s) <= 0.15
        ok &= good
        print(f"{e.file:<48}{e.subset:<10}{e.duration_s:>8.3f}{got:>8.3f}  {'ok' if good else 'FAIL'}")
    total = sum(p.stat().st_size for p in AUDIO_DIR.iterdir())
    print(f"audio/ total: {total} bytes in {len(entries)} files")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("speech_dir", nargs="?", type=Path, default=DEFAULT_SPEECH_DIR)
    args = parser.parse_args()
    if shutil.which("c2enc") is None or shutil.which("c2dec") is None:
        parser.error("c2enc/c2dec not found: apt-get install codec2")
    entries = build(args.speech_dir.resolve())
    write_manifest(entries)
    return 0 if verify(entries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
