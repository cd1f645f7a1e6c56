"""Steady single-tone runs ("tracks") out of the frame features: the building blocks of two-tone,
long and hi-low pages.

A track is a run of pure frames (see :class:`~rdio_core.tone_settings.ToneSettings.min_purity`) whose
peak stays within 1.5% (at least 6 Hz) of the run's mean. 1.5% is below half the ~3.5% between
neighbouring tones of the paging tables, so tone A and tone B never merge, and above the per-frame
jitter of a tone 5 dB over white noise (under 1%). Up to :data:`MAX_DROPOUT_FRAMES` impure frames
inside a run (codec artefacts, a burst of noise) do not end it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdio_core.tone_settings import ToneSettings
from rdio_tasks.tones.frames import Frames, refine_frequency

STEADY_PERCENT = 1.5
STEADY_MIN_HZ = 6.0
MAX_DROPOUT_FRAMES = 3


@dataclass
class Track:
    start: float  # seconds
    end: float
    hz: float  # refined over the whole track
    used: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def near(self, hz: float) -> bool:
        return abs(self.hz - hz) <= max(STEADY_MIN_HZ, self.hz * STEADY_PERCENT / 100)


def steady(reference: float, hz: float) -> bool:
    return abs(hz - reference) <= max(STEADY_MIN_HZ, reference * STEADY_PERCENT / 100)


def find_tracks(
    audio: np.ndarray, frames: Frames, settings: ToneSettings, exclude: np.ndarray, min_seconds: float
) -> list[Track]:
    """Tracks at least ``min_seconds`` long, in time order; ``exclude`` masks frames that belong to
    something else (DTMF digits)."""
    tonal = (
        (frames.purity >= settings.min_purity)
        & (frames.level_dbfs >= settings.min_level_dbfs)
        & frames.interior
        & ~exclude
    )
    peak = frames.peak_hz
    runs: list[tuple[int, int]] = []
    first = last = -1
    total = 0.0
    count = 0
    for j in np.flatnonzero(tonal).tolist():
        if first >= 0 and j - last <= MAX_DROPOUT_FRAMES + 1 and steady(total / count, float(peak[j])):
            last = j
            total += float(peak[j])
            count += 1
            continue
        if first >= 0:
            runs.append((first, last))
        first = last = j
        total, count = float(peak[j]), 1
    if first >= 0:
        runs.append((first, last))
    tracks = []
    for a, b in runs:
        start, end = frames.start_of(a), frames.end_of(b)
        if end - start < min_seconds:
            continue
        mean = float(np.mean(peak[a : b + 1]))
        span = frames.rate / frames.win  # one frame bin either side
        tracks.append(Track(start, end, refine_frequency(audio, frames.rate, start, end, mean, span)))
    return tracks
