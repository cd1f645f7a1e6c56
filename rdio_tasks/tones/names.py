"""Names from ``tones.sets``: the first set that matches a detected tone names it."""

from __future__ import annotations

from rdio_core.tone_settings import ToneKind, ToneSet, ToneSettings
from rdio_tasks.tones.model import Tone


def matches(tone_set: ToneSet, tone: Tone, default_percent: float) -> bool:
    """Same kind (when the set names one) and the same digits, or frequencies each within the set's
    tolerance: in order for a two-tone page (A then B), in either order for a hi-low warble."""
    if tone_set.kind is not None and tone_set.kind is not tone.kind:
        return False
    if tone_set.digits is not None:
        return tone.kind is ToneKind.DTMF and tone.digits == tone_set.digits
    if tone.kind is ToneKind.DTMF or len(tone_set.tones) != len(tone.frequencies):
        return False
    want, got = list(tone_set.tones), list(tone.frequencies)
    if tone.kind is ToneKind.HI_LOW:
        want, got = sorted(want), sorted(got)
    return all(
        abs(g - w) <= (tone_set.tolerance_hz or w * default_percent / 100)
        for w, g in zip(want, got, strict=True)
    )


def name_tones(tones: list[Tone], settings: ToneSettings) -> list[Tone]:
    """``tones`` with ``name`` set from the first matching set (unnamed when none matches)."""
    named = []
    for tone in tones:
        hit = next((s for s in settings.sets if matches(s, tone, settings.match_tolerance_percent)), None)
        named.append(tone.named(hit.name if hit is not None else None))
    return named
