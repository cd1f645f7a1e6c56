"""Tracks into pages: hi-low warbles first (many short alternating tracks), then two-tone pairs
(tone A then tone B), then whatever steady tone is left long enough to be a long tone."""

from __future__ import annotations

import itertools

from rdio_core.tone_settings import ToneKind, ToneSettings
from rdio_tasks.tones.model import Tone
from rdio_tasks.tones.tracks import Track

#: Largest silence between two halves of a warble: the change itself blurs 2-4 frames (20-40 ms).
HI_LOW_MAX_GAP_SECONDS = 0.15


def hi_low(tracks: list[Track], settings: ToneSettings) -> list[Tone]:
    """Runs of short tracks alternating between two frequencies."""
    found = []
    i = 0
    while i < len(tracks):
        chain = [tracks[i]]
        j = i + 1
        while j < len(tracks) and _continues(chain, tracks[j], settings):
            chain.append(tracks[j])
            j += 1
        if len(chain) - 1 >= settings.hi_low_min_alternations and all(
            _warble_half(t, settings) for t in chain
        ):
            for t in chain:
                t.used = True
            first = [t.hz for t in chain[0::2]]
            second = [t.hz for t in chain[1::2]]
            hz = (sum(first) / len(first), sum(second) / len(second))
            found.append(Tone(ToneKind.HI_LOW, hz, chain[0].start, chain[-1].end))
            i = j
        else:
            i += 1
    return found


def _warble_half(track: Track, settings: ToneSettings) -> bool:
    return settings.hi_low_min_seconds <= track.seconds <= settings.hi_low_max_seconds


def _continues(chain: list[Track], nxt: Track, settings: ToneSettings) -> bool:
    last = chain[-1]
    if nxt.start - last.end > HI_LOW_MAX_GAP_SECONDS or last.near(nxt.hz) or not _warble_half(nxt, settings):
        return False
    return len(chain) < 2 or chain[-2].near(nxt.hz)


def two_tone(tracks: list[Track], settings: ToneSettings) -> list[Tone]:
    """Tone A (``two_tone_a_*``) followed within ``two_tone_max_gap_seconds`` by a different tone B."""
    found = []
    free = [t for t in tracks if not t.used]
    for a, b in itertools.pairwise(free):
        if a.used or b.used:
            continue
        if (
            settings.two_tone_a_min_seconds <= a.seconds <= settings.two_tone_a_max_seconds
            and b.seconds >= settings.two_tone_b_min_seconds
            and b.start - a.end <= settings.two_tone_max_gap_seconds
            and not a.near(b.hz)
        ):
            a.used = b.used = True
            found.append(Tone(ToneKind.TWO_TONE, (a.hz, b.hz), a.start, b.end))
    return found


def long_tones(tracks: list[Track], settings: ToneSettings) -> list[Tone]:
    found = []
    for t in tracks:
        if not t.used and t.seconds >= settings.long_min_seconds:
            t.used = True
            found.append(Tone(ToneKind.LONG, (t.hz,), t.start, t.end))
    return found
