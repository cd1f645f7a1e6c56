"""Per-frame spectral features: the strongest peak, how much of the band it holds, DTMF energies.

32 ms Hann frames every 10 ms. 32 ms gives 31.25 Hz bins: wide enough that a DTMF digit's 40 ms
fills a frame, narrow enough that the closest DTMF pair (697/770 Hz, 2.3 bins) separates; the peak
is interpolated between bins, and :func:`refine_frequency` measures each tone again over its whole
length. Frames are computed in blocks so a 15-minute call never holds its whole STFT (~185 MB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rdio_core.tone_settings import ToneSettings

WINDOW_SECONDS = 0.032
HOP_SECONDS = 0.010
#: A tone's energy is counted within +-2 bins of its peak: the Hann main lobe.
LOBE_BINS = 2
#: The DTMF grid (Hz): four row (low) and four column (high) tones.
DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
#: Half-width of the band counted as a DTMF tone's own energy (the grid allows +-1.5% drift).
DTMF_LOBE_HZ = 50.0
_BLOCK = 4096  # frames per block (~8 MB of spectrum at 16 kHz)


@dataclass
class Frames:
    """Features of frame ``j``, which covers samples ``[j * hop, j * hop + win)``."""

    rate: int
    win: int
    hop: int
    level_dbfs: np.ndarray  # mean power of the frame
    peak_hz: np.ndarray  # interpolated frequency of the strongest in-band peak
    purity: np.ndarray  # share of the band's energy within +-2 bins of that peak
    interior: np.ndarray  # the peak is a local maximum within min_hz..max_hz (not leakage from outside)
    dtmf_energy: np.ndarray  # (frames, 8): energy at each DTMF frequency (windowed DFT)
    dtmf_lobes: np.ndarray  # (frames, 8): band energy within +-50 Hz of each DTMF frequency
    band_energy: np.ndarray

    def __len__(self) -> int:
        return int(self.level_dbfs.shape[0])

    def start_of(self, frame: int) -> float:
        """When a run of tone frames starting at ``frame`` began: the frame turns tonal once the
        tone fills about half of it, so its centre is the onset to within a hop."""
        return (frame * self.hop + self.win / 2) / self.rate

    def end_of(self, frame: int) -> float:
        return (frame * self.hop + self.win / 2) / self.rate


def analyse(audio: np.ndarray, rate: int, settings: ToneSettings) -> Frames:
    """Frame features of mono ``audio`` (float, [-1, 1]) sampled at ``rate``."""
    win = max(16, round(WINDOW_SECONDS * rate))
    hop = max(1, round(HOP_SECONDS * rate))
    count = 0 if audio.shape[0] < win else 1 + (audio.shape[0] - win) // hop
    window = np.hanning(win).astype(np.float32)
    bin_hz = rate / win
    freqs = np.arange(win // 2 + 1) * bin_hz
    # The band analysed reaches a lobe past min_hz/max_hz, so a tone right at a limit is still a
    # peak inside it; peaks beyond the limits are then refused by frequency (``interior``).
    first = max(1, math.floor(settings.min_hz / bin_hz) - LOBE_BINS)
    last = min(math.ceil(settings.max_hz / bin_hz) + LOBE_BINS, win // 2)
    band = freqs[first : last + 1]
    dtmf = np.array(DTMF_LOW + DTMF_HIGH)
    basis = (np.exp(-2j * np.pi * np.outer(np.arange(win), dtmf) / rate) * window[:, None]).astype(
        np.complex64
    )
    lobe_masks = (np.abs(band[:, None] - dtmf[None, :]) <= DTMF_LOBE_HZ).astype(np.float32)

    out = {
        name: np.zeros(count, dtype=np.float32) for name in ("level_dbfs", "peak_hz", "purity", "band_energy")
    }
    interior = np.zeros(count, dtype=bool)
    dtmf_energy = np.zeros((count, dtmf.size), dtype=np.float32)
    dtmf_lobes = np.zeros((count, dtmf.size), dtype=np.float32)
    if count == 0 or last <= first + 2 * LOBE_BINS:
        return Frames(
            rate, win, hop, **out, interior=interior, dtmf_energy=dtmf_energy, dtmf_lobes=dtmf_lobes
        )
    view = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float32, copy=False), win)[::hop]
    for lo in range(0, count, _BLOCK):
        hi = min(count, lo + _BLOCK)
        block = view[lo:hi]
        out["level_dbfs"][lo:hi] = 10 * np.log10(np.mean(np.square(block, dtype=np.float64), axis=1) + 1e-20)
        power = np.abs(np.fft.rfft(block * window, axis=1)[:, first : last + 1]) ** 2
        total = power.sum(axis=1) + 1e-20
        k = power.argmax(axis=1)
        # Energy within +-LOBE_BINS of the peak, from a running sum (edges clipped to the band).
        csum = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
        rows = np.arange(power.shape[0])
        lobe = (
            csum[rows, np.minimum(k + LOBE_BINS + 1, power.shape[1])]
            - csum[rows, np.maximum(k - LOBE_BINS, 0)]
        )
        out["purity"][lo:hi] = lobe / total
        out["band_energy"][lo:hi] = total
        inside = (k > 0) & (k < power.shape[1] - 1)
        kc = np.clip(k, 1, power.shape[1] - 2)
        a, b, c = (np.log(power[rows, kc + d] + 1e-30) for d in (-1, 0, 1))
        denom = a - 2 * b + c
        delta = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
        out["peak_hz"][lo:hi] = (first + kc + np.clip(delta, -0.5, 0.5)) * bin_hz
        hz = out["peak_hz"][lo:hi]
        interior[lo:hi] = inside & (b >= a) & (b >= c) & (hz >= settings.min_hz) & (hz <= settings.max_hz)
        dtmf_energy[lo:hi] = np.abs(block @ basis) ** 2
        dtmf_lobes[lo:hi] = power @ lobe_masks
    return Frames(rate, win, hop, **out, interior=interior, dtmf_energy=dtmf_energy, dtmf_lobes=dtmf_lobes)


def refine_frequency(
    audio: np.ndarray, rate: int, start: float, end: float, around: float, span: float
) -> float:
    """The frequency of the tone in ``audio[start:end]`` (seconds) nearest ``around`` (+-``span`` Hz),
    from one zero-padded FFT over the tone's middle (at most 2 s): a few hundredths of a Hz on a clean
    tone, against +-15 Hz for one frame's bin."""
    margin = min(0.02, (end - start) / 4)
    lo, hi = int((start + margin) * rate), int((end - margin) * rate)
    longest = 2 * rate
    if hi - lo > longest:
        mid = (lo + hi) // 2
        lo, hi = mid - longest // 2, mid + longest // 2
    piece = audio[max(0, lo) : max(0, hi)].astype(np.float64)
    if piece.size < 32:
        return around
    nfft = 1 << max(math.ceil(math.log2(piece.size * 8)), math.ceil(math.log2(rate * 4)))
    power = np.abs(np.fft.rfft(piece * np.hanning(piece.size), nfft)) ** 2
    step = rate / nfft
    k_lo = max(1, int((around - span) / step))
    k_hi = min(power.size - 2, int((around + span) / step) + 1)
    if k_hi <= k_lo:
        return around
    k = k_lo + int(np.argmax(power[k_lo : k_hi + 1]))
    a, b, c = (math.log(power[k + d] + 1e-30) for d in (-1, 0, 1))
    denom = a - 2 * b + c
    delta = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
    return float((k + max(-0.5, min(0.5, delta))) * step)
