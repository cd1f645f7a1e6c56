"""Add the other-language clips (``lang_*`` subsets) to ``tests/corpus``: synthetic speech.

Why synthetic: the multilingual tests need speech in other languages with a known transcript and a
free license, small enough to commit; espeak-ng voices give that. They are made once and
committed, so tests need no espeak-ng at run time.

Why these languages and this format: Whisper base names the language of espeak-ng's Spanish and
Italian voices with p = 0.94 and 0.98 (16 kHz, 175/160 words a minute), but its German voice only
reaches p = 0.56-0.62 and its French voice is heard as Thai or Hungarian (p up to 0.94), and the
corpus radio chain (8 kHz band-pass, hiss, compressor) pushes even Spanish under the 0.5
``language_min_probability``: robotic speech plus radio distortion is more than base can place. So
the clips are wideband: 16 kHz mono, peak -6 dBFS, MP3 32 kbps. One Italian clip is shorter than
``radio.language_min_seconds`` (2 s of speech) to exercise the short-call fallback.

The subset is ``lang_<code>``. Rows already in ``manifest.tsv`` are kept; ``lang_*`` rows are
replaced. Run after ``make_corpus.py`` (which rewrites the manifest):

    apt-get install espeak-ng && python tests/corpus/make_languages.py
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_corpus as mc

# (file stem, espeak voice, words per minute, language code, text)
CLIPS: tuple[tuple[str, str, int, str, str], ...] = (
    (
        "espeak_es_accidente",
        "es",
        175,
        "es",
        "Atención a todas las unidades. Tenemos un accidente de tráfico en la avenida principal, "
        "cerca del hospital. Hay dos heridos.",
    ),
    (
        "espeak_it_incidente",
        "it",
        160,
        "it",
        "Attenzione a tutte le unità. Abbiamo un incidente stradale sulla strada principale, "
        "vicino all'ospedale. Ci sono due feriti.",
    ),
    ("espeak_it_short", "it", 160, "it", "Ricevuto, grazie."),
)
RATE = 16000
PEAK = 0.5  # -6 dBFS
MP3_BITRATE = 32_000
SOURCE = "espeak-ng 1.51 voice {voice}, -s {speed}, make_languages.py"
LICENSE = "CC0 (synthesised)"


def speak(voice: str, speed: int, text: str) -> tuple[mc.np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        return mc.read_mono(wav)


def main() -> int:
    with mc.MANIFEST.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if not r["subset"].startswith("lang_")]
    entries = [
        mc.Entry(r["file"], r["subset"], r["reference"], float(r["duration_s"]), r["source"], r["license"])
        for r in rows
    ]
    for stem, voice, speed, code, text in CLIPS:
        speech, rate = speak(voice, speed, text)
        pcm = mc.resample(speech, rate, RATE)
        pcm = pcm * (PEAK / float(mc.np.abs(pcm).max()))
        path = mc.AUDIO_DIR / f"{stem}.mp3"
        mc.encode(mc.to_int16(pcm), RATE, path, "libmp3lame", MP3_BITRATE)
        duration = round(len(pcm) / RATE, 3)
        source = SOURCE.format(voice=voice, speed=speed)
        entries.append(mc.Entry(f"audio/{path.name}", f"lang_{code}", text, duration, source, LICENSE))
        print(f"{path.name:<36} {path.stat().st_size:>7} B {duration:6.2f} s  lang_{code}")
    mc.write_manifest(entries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
