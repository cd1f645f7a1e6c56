"""Generate the small audio upload fixtures in ``tests/data/clips/``.

Why: the upload endpoints must accept what real scanner software sends.
SDRTrunk uploads 8 kHz mono MP3 at 16 kbps CBR; trunk-recorder uploads mono
AAC-LC in an M4A (MP4) container (fdkaac, 8 kbps); other feeds send WAV, FLAC
or Ogg/Opus.
Tests need a few-KB file of each kind (plus a junk ``.mp3`` and a very short
key-up) without depending on a system ``ffmpeg``, so every file is built here
with PyAV (whose wheel bundles FFmpeg with libmp3lame, aac, libopus and flac).

Source: ``ldc93s1_16k.wav`` from the shared speech folder (TIMIT sample
"She had your dark suit in greasy wash water all year.", ~2.9 s; LDC TIMIT
free sample, repo MPL-2.0; see ``refs.tsv``).

Notes:
* 8 kHz MP3 works with the bundled lame (MPEG-2.5 layer III), so no 16 kHz
  fallback is needed.
* Duration caveats worth knowing for server code: PyAV decodes the MP3 to the
  exact length (FFmpeg reads its own LAME/Info tag), but mutagen does not
  recognise FFmpeg's "Lavf" tag and reports encoder delay + padding too
  (+0.14..0.21 s at 8 kHz).  For the M4A, mutagen includes the 1024-sample AAC
  priming (+0.128 s at 8 kHz).
* ``speech.ogg`` (Ogg/Vorbis) is written only if a Vorbis encoder can encode
  mono.  The PyAV 18 wheel has no libvorbis, and FFmpeg's native ``vorbis``
  encoder only supports 2 channels, so the file is skipped there.
* Output is deterministic: resampling is done with scipy (polyphase), noise
  uses a fixed seed, and muxers/encoders run with ``bitexact`` flags (no
  random Ogg serial numbers, no version strings).

Usage (from the repo root)::

    python tests/data/make_clips.py [--speech-dir ../shared/speech]
"""

from __future__ import annotations

import argparse
import csv
import sys
from fractions import Fraction
from pathlib import Path

import av
import mutagen
import numpy as np
from scipy.signal import resample_poly

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEECH_DIR = (REPO_ROOT / ".." / "shared" / "speech").resolve()
OUT_DIR = Path(__file__).resolve().parent / "clips"
SOURCE_FILE = "ldc93s1_16k.wav"
SEED = 20240501
MUTAGEN_TOLERANCE_S = 0.15
# FFmpeg labels the MP3 LAME/Info tag "Lavf", which mutagen does not parse, so
# mutagen's MP3 length includes the encoder delay (576 + 529 samples) and the
# last-frame padding (< 576 samples).  At 8 kHz that is 0.14-0.21 s.
MP3_EXTRA_SAMPLES_MAX = 576 + 529 + 576


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
    """Encode int16 mono ``pcm`` at ``rate`` with ``codec`` into ``path``.

    ``bitexact`` keeps the output reproducible (no random Ogg serials, no
    library version strings).
    """
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


def decoded_duration(path: Path) -> float:
    """Duration from actually decoding every sample with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


def mutagen_duration(path: Path) -> float | None:
    info = mutagen.File(str(path))
    return None if info is None else float(info.info.length)


def load_refs(speech_dir: Path) -> dict[str, dict[str, str]]:
    with open(speech_dir / "refs.tsv", newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}


NOT_AUDIO = b"""<!DOCTYPE html>
<html><head><title>404 Not Found</title></head>
<body><h1>Not Found</h1>
<p>The requested URL /calls/2024/05/01/1714560000-460.mp3 was not found on
this server. This file is an HTML error page saved with an .mp3 name; it is
not audio and must be rejected by the upload endpoint.</p>
<hr><address>nginx</address></body></html>
"""


def build(speech_dir: Path) -> list[tuple[str, str, float]]:
    """Write all fixtures; return (file, description, true duration) rows."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    speech, src_rate = read_mono(speech_dir / SOURCE_FILE)
    speech = speech / max(1e-9, float(np.max(np.abs(speech)))) * 0.89  # peak -1 dBFS
    pcm8 = to_int16(resample(speech, src_rate, 8000))
    pcm16 = to_int16(resample(speech, src_rate, 16000))
    dur8 = len(pcm8) / 8000
    dur16 = len(pcm16) / 16000
    rows: list[tuple[str, str, float]] = []

    encode(pcm8, 8000, OUT_DIR / "speech_sdrtrunk.mp3", "libmp3lame", 16_000)
    rows.append(("speech_sdrtrunk.mp3", "MP3 (libmp3lame), 8 kHz mono, 16 kbps CBR", dur8))

    # trunk-recorder runs `fdkaac -p 2 -b 8000 --moov-before-mdat`: AAC-LC, 8 kbps.
    encode(
        pcm8,
        8000,
        OUT_DIR / "speech.m4a",
        "aac",
        8_000,
        codec_options={"profile": "aac_low"},
        container_options={"movflags": "+faststart"},
    )
    rows.append(("speech.m4a", "AAC-LC (aac) in M4A/MP4, 8 kHz mono, 8 kbps, moov first", dur8))

    encode(pcm8, 8000, OUT_DIR / "speech.wav", "pcm_s16le")
    rows.append(("speech.wav", "WAV PCM s16le, 8 kHz mono", dur8))

    encode(pcm8, 8000, OUT_DIR / "speech.flac", "flac")
    rows.append(("speech.flac", "FLAC, 8 kHz mono, 16-bit", dur8))

    encode(pcm16, 16000, OUT_DIR / "speech.opus", "libopus", 16_000, fmt="ogg")
    rows.append(("speech.opus", "Ogg/Opus (libopus), 16 kHz input, mono, 16 kbps", dur16))

    ogg = OUT_DIR / "speech.ogg"
    vorbis = "libvorbis" if "libvorbis" in av.codecs_available else "vorbis"
    try:
        encode(pcm16, 16000, ogg, vorbis, 32_000, codec_options={"strict": "experimental"})
        rows.append(("speech.ogg", f"Ogg/Vorbis ({vorbis}), 16 kHz mono", dur16))
    except (av.FFmpegError, OSError, ValueError) as exc:
        ogg.unlink(missing_ok=True)
        print(f"skipping speech.ogg: no mono Vorbis encoder ({exc})", file=sys.stderr)

    keyup_n = int(0.3 * 8000)
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal(keyup_n) * 10 ** (-40 / 20)  # -40 dBFS RMS
    ramp = np.minimum(1.0, np.minimum(np.arange(keyup_n), np.arange(keyup_n)[::-1]) / 80.0)
    encode(to_int16(noise * ramp), 8000, OUT_DIR / "short_keyup.mp3", "libmp3lame", 16_000)
    rows.append(("short_keyup.mp3", "0.3 s low noise (-40 dBFS), MP3 8 kHz mono 16 kbps", 0.3))

    (OUT_DIR / "not_audio.mp3").write_bytes(NOT_AUDIO)
    return rows


def verify(rows: list[tuple[str, str, float]]) -> bool:
    ok = True
    print(f"{'file':<22}{'bytes':>7}{'true_s':>8}{'pyav_s':>8}{'mutagen_s':>10}  status")
    for name, _desc, true_s in rows:
        path = OUT_DIR / name
        pyav_s = decoded_duration(path)
        mut_s = mutagen_duration(path)
        status = "FAIL"
        if abs(pyav_s - true_s) <= MUTAGEN_TOLERANCE_S and mut_s is not None:
            if abs(mut_s - true_s) <= MUTAGEN_TOLERANCE_S:
                status = "ok"
            elif name.endswith(".mp3") and 0 <= mut_s - true_s <= MP3_EXTRA_SAMPLES_MAX / 8000:
                status = "ok* (mutagen counts MP3 encoder delay+padding)"
        ok &= status != "FAIL"
        mut_txt = "None" if mut_s is None else f"{mut_s:.3f}"
        print(f"{name:<22}{path.stat().st_size:>7}{true_s:>8.3f}{pyav_s:>8.3f}{mut_txt:>10}  {status}")
    junk = OUT_DIR / "not_audio.mp3"
    try:
        decoded_duration(junk)
        print("not_audio.mp3: PyAV decoded it (unexpected)")
        ok = False
    except av.FFmpegError as exc:
        print(f"not_audio.mp3: PyAV rejects it as expected ({type(exc).__name__})")
    total = sum(p.stat().st_size for p in OUT_DIR.iterdir() if p.is_file())
    print(f"total size of clips/: {total} bytes")
    return ok


def write_readme(rows: list[tuple[str, str, float]], ref: dict[str, str]) -> None:
    lines = [
        "# Upload fixtures",
        "",
        "Generated by `python tests/data/make_clips.py` (PyAV + numpy + scipy; no system",
        "ffmpeg). Do not edit by hand; re-run the script instead (output is deterministic).",
        "",
        f"Speech source: `{SOURCE_FILE}` ({ref['source']}).",
        f'Reference text: "{ref["reference"]}"',
        f"License: {ref['license']}.",
        "",
        "| file | what it is | duration (s) | source | license |",
        "|---|---|---|---|---|",
    ]
    for name, desc, dur in rows:
        if name.startswith("speech"):
            src, lic = f"`{SOURCE_FILE}` ({ref['source']})", ref["license"]
        else:
            src, lic = "generated (seeded white noise)", "CC0"
        lines.append(f"| `{name}` | {desc} | {dur:.3f} | {src} | {lic} |")
    lines.append(
        "| `not_audio.mp3` | HTML 404 page (text, not audio) named .mp3; must be rejected "
        "| n/a | generated | CC0 |"
    )
    lines += [
        "",
        "Durations are of the PCM fed to the encoder; PyAV decodes every file to that",
        "length (M4A: +0.02 s of AAC end padding). mutagen reports the MP3s",
        "0.14-0.21 s too long (it ignores FFmpeg's `Lavf` LAME tag, so it counts encoder",
        "delay + padding) and the M4A +0.128 s (AAC priming).",
    ]
    if not (OUT_DIR / "speech.ogg").exists():
        lines += [
            "",
            "`speech.ogg` (Ogg/Vorbis) is not provided: the PyAV wheel has no libvorbis and",
            "FFmpeg's native `vorbis` encoder only supports stereo.",
        ]
    (OUT_DIR / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech-dir", type=Path, default=DEFAULT_SPEECH_DIR)
    args = parser.parse_args()
    speech_dir: Path = args.speech_dir
    refs = load_refs(speech_dir)
    rows = build(speech_dir)
    write_readme(rows, refs[SOURCE_FILE])
    return 0 if verify(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
