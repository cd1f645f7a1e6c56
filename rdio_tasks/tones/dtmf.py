"""DTMF digits: one row tone and one column tone together, each clearly the strongest of its group.

A frame is a digit when (1) the strongest low-group and high-group DFT energies each stand 10 dB
above the runner-up of their group, (2) the two tones' +-50 Hz bands hold at least ``min_purity`` of
the frame's band energy, and (3) the twist (high/low level) is within +-10 dB (Q.24 allows 8 dB
reverse and 4 dB forward; radio receivers add their own de-emphasis). A run of such frames with the
same digit lasting ``dtmf_min_digit_seconds`` is a digit; digits closer than ``dtmf_max_gap_seconds``
are one sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdio_core.tone_settings import ToneKind, ToneSettings
from rdio_tasks.tones.frames import DTMF_HIGH, DTMF_LOW, Frames, refine_frequency
from rdio_tasks.tones.model import Tone

KEYS = ("123A", "456B", "789C", "*0#D")  # rows: low tones; columns: high tones
GROUP_MARGIN_DB = 10.0
MAX_TWIST_DB = 10.0
#: How far a digit's tones may be from the grid, measured over the whole digit. Q.24 decoders must
#: accept 1.5% and reject 3.5%; a held vowel once passed every other test at 3.3% off 770 Hz.
MAX_OFF_GRID = 0.02
_SEARCH = 0.04  # each digit's tones are measured within 4% of the grid (neighbours are 9-10% apart)


@dataclass
class Digit:
    key: str
    first: int
    last: int
    low: float
    high: float


def digit_frames(frames: Frames, settings: ToneSettings) -> np.ndarray:
    """Per frame: the index of its digit (row * 4 + column), or -1."""
    energy = frames.dtmf_energy.astype(np.float64) + 1e-30
    low, high = energy[:, :4], energy[:, 4:]
    row, col = low.argmax(axis=1), high.argmax(axis=1)
    rows = np.arange(len(frames))
    low_best, high_best = low[rows, row], high[rows, col]
    low_second = np.sort(low, axis=1)[:, -2]
    high_second = np.sort(high, axis=1)[:, -2]
    margin = 10 ** (GROUP_MARGIN_DB / 10)
    twist = 10 ** (MAX_TWIST_DB / 10)
    lobes = frames.dtmf_lobes[rows, row] + frames.dtmf_lobes[rows, 4 + col]
    ok = (
        (low_best >= margin * low_second)
        & (high_best >= margin * high_second)
        & (high_best <= twist * low_best)
        & (low_best <= twist * high_best)
        & (lobes >= settings.min_purity * frames.band_energy)
        & (frames.level_dbfs >= settings.min_level_dbfs)
    )
    return np.where(ok, row * 4 + col, -1)


def detect_dtmf(audio: np.ndarray, frames: Frames, settings: ToneSettings) -> tuple[list[Tone], np.ndarray]:
    """DTMF sequences, and the mask of the frames their digits took (kept from the tone tracker)."""
    codes = digit_frames(frames, settings)
    used = np.zeros(len(frames), dtype=bool)
    digits: list[Digit] = []
    j = 0
    while j < len(codes):
        code = int(codes[j])
        if code < 0:
            j += 1
            continue
        k = j
        while k + 1 < len(codes) and codes[k + 1] == code:
            k += 1
        start, end = _span(frames, j, k)
        if end - start >= settings.dtmf_min_digit_seconds:
            row, col = divmod(code, 4)
            low = refine_frequency(audio, frames.rate, start, end, DTMF_LOW[row], DTMF_LOW[row] * _SEARCH)
            high = refine_frequency(audio, frames.rate, start, end, DTMF_HIGH[col], DTMF_HIGH[col] * _SEARCH)
            if (
                abs(low / DTMF_LOW[row] - 1) <= MAX_OFF_GRID
                and abs(high / DTMF_HIGH[col] - 1) <= MAX_OFF_GRID
            ):
                digits.append(Digit(KEYS[row][col], j, k, low, high))
                used[j : k + 1] = True
        j = k + 1
    tones: list[Tone] = []
    group: list[Digit] = []
    for digit in digits:
        if (
            group
            and _span(frames, digit.first, digit.first)[0] - _span(frames, group[-1].last, group[-1].last)[1]
            > settings.dtmf_max_gap_seconds
        ):
            tones.append(_sequence(frames, group))
            group = []
        group.append(digit)
    if group:
        tones.append(_sequence(frames, group))
    return tones, used


def _span(frames: Frames, first: int, last: int) -> tuple[float, float]:
    """Seconds covered by frames ``first``..``last``, trimmed by the part of a frame a digit needs to
    be recognised in it (a quarter window at each end)."""
    start = (first * frames.hop + frames.win / 4) / frames.rate
    end = (last * frames.hop + 3 * frames.win / 4) / frames.rate
    return start, end


def _sequence(frames: Frames, digits: list[Digit]) -> Tone:
    start = _span(frames, digits[0].first, digits[0].first)[0]
    end = _span(frames, digits[-1].last, digits[-1].last)[1]
    hz = tuple(f for d in digits for f in (d.low, d.high))
    return Tone(ToneKind.DTMF, hz, start, end, digits="".join(d.key for d in digits))
