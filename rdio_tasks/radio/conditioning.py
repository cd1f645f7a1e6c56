"""Audio conditioning before VAD and ASR: high-pass, dispatch-tone notching, loudness normalisation.

numpy only, imported inside each function: the API process imports :mod:`rdio_tasks.radio` without
numpy. The figures in the docstrings below were measured on the quality corpus (``tests/corpus``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rdio_tasks.radio.options import RadioOptions

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "active_level_dbfs",
    "find_tones",
    "frame_levels_dbfs",
    "highpass",
    "normalize_level",
    "prepare_audio",
    "suppress_tones",
]

SAMPLE_RATE = 16000


def prepare_audio(samples: np.ndarray, options: RadioOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """High-pass, tone removal and loudness normalisation of 16 kHz mono float32 audio.

    Returns the conditioned copy and what was done (``gain_db``, ``tones``), which the
    engine stores with the result. Order matters: tones are removed before the level
    is measured, so a loud page tone does not decide the speech gain.
    """
    import numpy as np

    audio = np.array(samples, dtype=np.float32, copy=True)
    info: dict[str, Any] = {}
    if options.highpass_hz:
        audio = highpass(audio, options.highpass_hz)
        info["highpass_hz"] = options.highpass_hz
    if options.suppress_tones:
        audio, tones = suppress_tones(audio, min_seconds=options.tone_min_seconds, purity=options.tone_purity)
        info["tones"] = tones
    if options.normalize_loudness:
        audio, gain_db = normalize_level(audio, options.target_dbfs, options.max_gain_db)
        info["gain_db"] = round(gain_db, 2)
    return audio, info


def highpass(audio: np.ndarray, corner_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth-magnitude high-pass by FFT (no scipy, no phase shift)."""
    import numpy as np

    n = audio.shape[0]
    if n < 2:
        return audio
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    with np.errstate(divide="ignore"):
        ratio = np.where(freqs > 0, corner_hz / np.maximum(freqs, 1e-9), np.inf)
    spectrum *= 1.0 / np.sqrt(1.0 + ratio ** (2 * order))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def frame_levels_dbfs(audio: np.ndarray, frame_seconds: float = 0.02) -> np.ndarray:
    """Power of consecutive 20 ms frames in dBFS (-200 for digital silence)."""
    import numpy as np

    n = max(1, int(frame_seconds * SAMPLE_RATE))
    usable = audio.shape[0] // n * n
    frames = audio[:usable].reshape(-1, n) if usable else audio.reshape(1, -1)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(np.maximum(power, 1e-20))


def active_level_dbfs(audio: np.ndarray, range_db: float = 30.0) -> float:
    """Power level over the 20 ms frames within ``range_db`` of the loudest (a light P.56).

    Pauses and hiss between words would otherwise pull a plain RMS down and make
    sparse calls louder than dense ones. -inf for digital silence.
    """
    import numpy as np

    levels = frame_levels_dbfs(audio)
    if levels.size == 0 or levels.max() <= -120:
        return -math.inf
    active = levels[levels >= levels.max() - range_db]
    return float(10 * np.log10(np.mean(10 ** (active / 10))))


def normalize_level(audio: np.ndarray, target_dbfs: float, max_gain_db: float) -> tuple[np.ndarray, float]:
    """Scale to ``target_dbfs`` active level, boosting at most ``max_gain_db``, never clipping.

    A call is boosted only when its active level stands at least 6 dB above its
    noise floor (10th percentile frame): a steady hiss or carrier with nothing on
    top gains nothing from being louder, and the VAD scores loud noise higher.
    Attenuation is always allowed.
    """
    import numpy as np

    level = active_level_dbfs(audio)
    if not math.isfinite(level) or level < -90:
        return audio, 0.0
    gain_db = min(target_dbfs - level, max_gain_db)
    if gain_db > 0 and level - float(np.percentile(frame_levels_dbfs(audio), 10)) < _MIN_DYNAMICS_DB:
        gain_db = 0.0
    peak = float(np.max(np.abs(audio)))
    if peak > 0:
        gain_db = min(gain_db, 20 * math.log10(0.99 / peak))  # scale, never clip
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32), gain_db


_MIN_DYNAMICS_DB = 6.0  # active level above the noise floor before a boost is applied
_N_FFT, _HOP = 1024, 256  # tone analysis: 64 ms frames (15.6 Hz bins), 16 ms hop
_NOTCH_BINS = 4  # +-4 bins (62 Hz) around a tone peak: the Hann main lobe plus margin


def find_tones(audio: np.ndarray, *, min_seconds: float = 0.4, purity: float = 0.9) -> list[dict[str, Any]]:
    """Regions where one or two steady sinusoids carry the signal: pages, alert tones, DTMF.

    Per 64 ms frame (hop 16 ms), the share of 250-3500 Hz energy within +-2 FFT bins
    of the two strongest peaks ("purity") is close to 1 for tones and rarely above
    0.9 for speech, whose energy spreads over many harmonics that move with the
    pitch. A run of pure frames whose peak stays within one bin (15.6 Hz) for
    ``min_seconds`` is a tone; on the test speech such runs last at most ~0.2 s.
    Returns ``[{"start", "end", "hz": [peak frequencies]}]`` in seconds.
    """
    return _scan_tones(audio, min_seconds, purity)[0]


def suppress_tones(
    audio: np.ndarray, *, min_seconds: float = 0.4, purity: float = 0.9
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Notch the tones :func:`find_tones` reports out of the audio, leaving everything else.

    Only the tone's own bins (+-62 Hz) are removed, in the tone's frames, by STFT
    masking and overlap-add: the hiss around and under the tone stays, so the VAD
    sees an unbroken noise floor instead of a tone, or of a hole cut by muting
    (which the segmentation model scores as an onset), and speech talking over a
    tone keeps all its other frequencies.
    """
    import numpy as np

    tones, runs, peaks, spectrum = _scan_tones(audio, min_seconds, purity)
    if not tones:
        return audio, tones
    window = np.hanning(_N_FFT).astype(np.float32)
    bins = np.arange(-_NOTCH_BINS, _NOTCH_BINS + 1)
    out = audio.copy()
    for first, last in runs:
        frames = np.arange(first, last + 1)
        for p in range(peaks.shape[1]):
            cols = np.clip(peaks[frames, p][:, None] + bins[None, :], 0, spectrum.shape[1] - 1)
            spectrum[frames[:, None], cols] = 0.0
        lo, hi = first * _HOP, last * _HOP + _N_FFT
        # Overlap-add of every frame touching [lo, hi), normalised by the summed window^2.
        touch = np.arange(max(0, first - _N_FFT // _HOP + 1), min(len(spectrum), last + _N_FFT // _HOP))
        acc = np.zeros(hi - lo + 2 * _N_FFT, dtype=np.float64)
        norm = np.zeros_like(acc)
        base = touch[0] * _HOP
        for j in touch:
            at = j * _HOP - base
            acc[at : at + _N_FFT] += np.fft.irfft(spectrum[j], _N_FFT) * window
            norm[at : at + _N_FFT] += window**2
        seg = slice(lo - base, hi - base)
        out[lo:hi] = (acc[seg] / np.maximum(norm[seg], 1e-6)).astype(np.float32)
    return out, tones


def _scan_tones(
    audio: np.ndarray, min_seconds: float, purity: float
) -> tuple[list[dict[str, Any]], list[tuple[int, int]], np.ndarray, np.ndarray]:
    """(tones, frame runs, peak bins per frame, complex STFT) for find/suppress_tones."""
    import numpy as np

    if audio.shape[0] < _N_FFT:
        return [], [], np.zeros((0, 2), dtype=int), np.zeros((0, _N_FFT // 2 + 1), dtype=np.complex64)
    frames = np.lib.stride_tricks.sliding_window_view(audio, _N_FFT)[::_HOP]
    spectrum = np.fft.rfft(frames * np.hanning(_N_FFT).astype(np.float32), axis=1)
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
    power = np.abs(spectrum) ** 2
    power[:, (freqs < 250.0) | (freqs > 3500.0)] = 0.0  # where radio tones live
    total = power.sum(axis=1) + 1e-20
    share, peaks = _two_peak_share(power)
    loud = 10 * np.log10(total / _N_FFT) > -70.0  # ignore near-digital silence
    pure = (share / total >= purity) & loud
    min_frames = max(1, math.ceil(min_seconds * SAMPLE_RATE / _HOP))
    runs = _stable_runs(pure, peaks, min_frames)
    tones = [
        {
            "start": round(first * _HOP / SAMPLE_RATE, 3),
            "end": round((last * _HOP + _N_FFT) / SAMPLE_RATE, 3),
            "hz": _tone_frequencies(freqs[peaks[first : last + 1, 0]]),
        }
        for first, last in runs
    ]
    return tones, runs, peaks, spectrum


def _tone_frequencies(peak_hz: np.ndarray) -> list[float]:
    """Distinct main-peak frequencies of a run (a two-tone page has two), rounded to 10 Hz."""
    import numpy as np

    values, counts = np.unique(np.round(peak_hz / 10) * 10, return_counts=True)
    keep = values[counts >= max(2, 0.1 * len(peak_hz))]
    return [float(v) for v in keep] or [float(np.median(peak_hz))]


def _two_peak_share(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy within +-2 bins of the strongest and second strongest peak, and their bins."""
    import numpy as np

    work = power.copy()
    rows = np.arange(work.shape[0])[:, None]
    share = np.zeros(work.shape[0])
    peaks = np.zeros((work.shape[0], 2), dtype=int)
    for p in range(2):
        k = work.argmax(axis=1)
        cols = np.clip(k[:, None] + np.arange(-2, 3)[None, :], 0, work.shape[1] - 1)
        share += _lobe_energy(work, rows, cols)
        work[rows, cols] = 0.0
        peaks[:, p] = k
    return share, peaks


def _lobe_energy(work: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sum of distinct bins in each row's window (clipping at the edges may repeat a bin)."""
    import numpy as np

    picked = work[rows, cols]
    dup = np.zeros_like(picked, dtype=bool)
    dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
    return np.where(dup, 0.0, picked).sum(axis=1)


def _stable_runs(pure: np.ndarray, peaks: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """(first, last) frame of each run of pure frames whose peak bins stay put (+-1 bin)."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for j in range(len(pure)):
        steady = (
            start is not None and pure[j] and min(abs(int(peaks[j, 0]) - int(p)) for p in peaks[j - 1]) <= 1
        )
        if steady:
            continue
        if start is not None and j - start >= min_frames:
            runs.append((start, j - 1))
        start = j if pure[j] else None
    if start is not None and len(pure) - start >= min_frames:
        runs.append((start, len(pure) - 1))
    return runs
