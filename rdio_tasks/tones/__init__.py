"""Dispatch tones: detection (two-tone, long, hi-low, DTMF), naming, and keeping them from Whisper.

Why numpy and not icad-tone-detection (MIT, 2.9.0): that library loads audio through pydub, which
runs an ``ffmpeg`` binary for every call (the worker has none: audio is decoded with PyAV, and
icad's ``tone_detect`` fails on this machine for that reason), decodes DTMF and MDC in a bundled
native executable fed through a pipe, pulls in ``requests`` and ``pydub``, and takes a file or
bytes, not the samples the worker has already decoded. Here the whole detector is numpy over the
decoded samples. ``bench/tones.py`` (288 synthesised pages at random frequencies through SDRTrunk's
MP3 codec, half followed by speech): every page found from clean down to 3 dB SNR, none at 0 dB;
frequency error mean <= 0.03 Hz, max 0.1 Hz on two-tone, long and hi-low, max 2.7 Hz on DTMF;
start/end within 0.04 s; no false detection on the 25 corpus clips or the speech after pages; 16 ms
per call (7.4 s of audio) on this 2-core machine. scipy was not needed either: the work is FFTs and
peak interpolation, and scipy adds ~143 MB to an install whose API side avoids heavy packages.

numpy is imported here at module level: only the workers import this package (the analyze task and
the transcription task import it inside the task), never the API process.
"""

from rdio_tasks.tones.cut import Cuts, WhisperInput, cut_tones, only_tones, speech_seconds, whisper_input
from rdio_tasks.tones.detect import detect_tones
from rdio_tasks.tones.model import Tone, ToneKind, describe

__all__ = [
    "Cuts",
    "Tone",
    "ToneKind",
    "WhisperInput",
    "cut_tones",
    "describe",
    "detect_tones",
    "only_tones",
    "speech_seconds",
    "whisper_input",
]
