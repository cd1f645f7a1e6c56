"""``detect_tones``: every page in a call's audio, in time order, named from the configured sets."""

from __future__ import annotations

import numpy as np

from rdio_core.tone_settings import ToneKind, ToneSettings
from rdio_tasks.tones import pages
from rdio_tasks.tones.dtmf import detect_dtmf
from rdio_tasks.tones.frames import analyse
from rdio_tasks.tones.model import Tone
from rdio_tasks.tones.names import name_tones
from rdio_tasks.tones.tracks import find_tracks


def detect_tones(audio: np.ndarray, sample_rate: int, settings: ToneSettings) -> list[Tone]:
    """Two-tone, long, hi-low and DTMF tones in mono ``audio`` (float in [-1, 1]) at ``sample_rate``.

    DTMF goes first: its frames hold two tones at once and are masked from the single-tone tracker.
    Tracks as short as a warble's half-cycle are kept; the page rules decide what they are, and a
    track that is none of them (a beep, a held vowel) is not reported.
    """
    if not settings.enabled or audio.size == 0:
        return []
    frames = analyse(audio, sample_rate, settings)
    found: list[Tone] = []
    exclude = np.zeros(len(frames), dtype=bool)
    if ToneKind.DTMF in settings.kinds:
        dtmf, exclude = detect_dtmf(audio, frames, settings)
        found += dtmf
    kinds = set(settings.kinds) - {ToneKind.DTMF}
    if kinds:
        shortest = min(
            settings.hi_low_min_seconds if ToneKind.HI_LOW in kinds else np.inf,
            settings.two_tone_a_min_seconds if ToneKind.TWO_TONE in kinds else np.inf,
            settings.long_min_seconds if ToneKind.LONG in kinds else np.inf,
        )
        tracks = find_tracks(audio, frames, settings, exclude, float(shortest))
        if ToneKind.HI_LOW in kinds:
            found += pages.hi_low(tracks, settings)
        if ToneKind.TWO_TONE in kinds:
            found += pages.two_tone(tracks, settings)
        if ToneKind.LONG in kinds:
            found += pages.long_tones(tracks, settings)
    found.sort(key=lambda t: t.start)
    return name_tones(found, settings)
