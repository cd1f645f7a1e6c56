"""``tones``: dispatch-tone detection settings and the named tone sets of a deployment.

One frozen pydantic model, validated when the settings load, like ``transcription.radio``: a typo or
an impossible value stops the program with one line naming the key. It lives in ``rdio_core``
because the settings tree holds it; the detector (``rdio_tasks.tones``) reads it as its options, so
there is no second list of knobs. Edits to ``config.yaml`` apply to the next call without a restart
(the worker re-reads the file; see ``rdio_core.settings_reload``).

The defaults come from what the tones are on the air and were checked on the quality corpus
(``tests/corpus``) and synthesised pages (``bench/tones.py``); the figures are on each field.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ToneKind", "ToneSet", "ToneSettings"]

Hz = Annotated[float, Field(gt=0, le=8000)]
Seconds = Annotated[float, Field(gt=0, le=60)]
DTMF_DIGITS = re.compile(r"^[0-9A-D*#]+$")


class ToneKind(StrEnum):
    """What a detected tone is (``calls.tones[].kind``)."""

    TWO_TONE = "two_tone"  # two-tone sequential (Motorola Quick Call II): tone A ~1 s, then tone B ~3 s
    LONG = "long"  # one steady tone of at least ``long_min_seconds``
    HI_LOW = "hi_low"  # two tones alternating (warble, hi-low siren-like page)
    DTMF = "dtmf"  # touch-tone digits


class ToneSet(BaseModel):
    """A named page: "Station 7" is 1002.3 Hz then 1270.7 Hz. A detected tone takes the name of the
    first set whose kind (when given) and frequencies (in order, for a two-tone page) or digits match.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = Field(min_length=1, max_length=200)
    tones: tuple[Hz, ...] = Field(default=(), max_length=2)
    """Frequencies in Hz: [A, B] of a two-tone page, [f] of a long tone, the two of a hi-low."""
    digits: str | None = Field(default=None, max_length=64)
    """A DTMF sequence instead of frequencies, e.g. "123#"."""
    kind: ToneKind | None = None
    """Only tones of this kind match (null: any kind with as many frequencies)."""
    tolerance_hz: float | None = Field(default=None, gt=0, le=500)
    """How far each detected frequency may be from this set's (null: ``match_tolerance_percent``)."""

    @model_validator(mode="after")
    def _tones_or_digits(self) -> ToneSet:
        if bool(self.tones) == bool(self.digits):
            raise ValueError("a tone set has either tones (Hz) or digits (DTMF), not both or neither")
        if self.digits is not None:
            if not DTMF_DIGITS.match(self.digits):
                raise ValueError("digits may hold only 0-9, A-D, * and #")
            if self.kind not in (None, ToneKind.DTMF):
                raise ValueError("a tone set with digits is a dtmf set")
        elif self.kind is ToneKind.DTMF:
            raise ValueError("a dtmf tone set names digits, not tones")
        return self


class ToneSettings(BaseModel):
    """How dispatch tones are found, named and kept out of Whisper's way."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Analyse every call for tones at upload (the ``analyze_call`` task on the ``alerts`` queue)
    and before transcription. False: no tones stored, no tone alerts, no skip or cut."""
    kinds: tuple[ToneKind, ...] = tuple(ToneKind)
    """Which kinds to report; the others are not looked for."""

    # --- what counts as a tone frame (32 ms frames, 10 ms apart)
    min_hz: Hz = 280.0
    """Lowest tone frequency. Paging tone tables start near 288 Hz; CTCSS sub-audible tones end at
    254.1 Hz and must not be reported as long tones on every call of a repeater that passes them."""
    max_hz: Hz = 3200.0
    """Highest tone frequency: radio audio is band-limited to about 3.4 kHz."""
    min_level_dbfs: float = Field(default=-50.0, le=0)
    """Frames quieter than this are not tones (hiss and digital silence)."""
    min_purity: float = Field(default=0.6, gt=0, le=1)
    """Share of a frame's ``min_hz``..``max_hz`` energy within +-62 Hz of its strongest peak: ~1 for
    a clean tone, ~0.7 for one 3 dB over white noise. ``bench/tones.py``: at 0.6 every synthesised
    page down to 3 dB SNR is found and nothing is reported on the corpus or the speech after pages;
    0.7 loses everything under 5 dB, 0.5 turns fragments of 0 dB pages into false detections.
    Speech peaks reach 0.9 in single frames, but never hold one frequency for long (below)."""

    # --- kinds, by duration
    two_tone_a_min_seconds: Seconds = 0.6
    """Tone A of a two-tone page (Quick Call II sends 1 s; recorders clip the start of a call)."""
    two_tone_a_max_seconds: Seconds = 3.0
    two_tone_b_min_seconds: Seconds = 2.0
    """Tone B (3 s on the air, 5-8 s for some group calls; recorders clip the end of a call)."""
    two_tone_max_gap_seconds: float = Field(default=0.3, ge=0, le=5)
    """Silence allowed between tone A and tone B (Quick Call II leaves none; some encoders ~0.25 s).
    Two separate tones further apart are two pages (a long tone and a beep, say), not one."""
    long_min_seconds: Seconds = 2.0
    """A single steady tone this long is a long tone. 2 s keeps a lone tone B (its tone A lost to a
    late recording start) while alert beeps (0.5-1.5 s; the corpus alert tone is 1.5 s) and the
    longest steady run on the speech corpus (0.15 s at purity 0.6) stay far below it."""
    hi_low_min_alternations: int = Field(default=4, ge=3, le=100)
    """Tone changes a hi-low warble needs (4 = e.g. high-low-high-low-high)."""
    hi_low_min_seconds: Seconds = 0.1
    """Shortest half-cycle of a warble; hi-low pages switch every 0.2-0.5 s."""
    hi_low_max_seconds: Seconds = 1.5
    dtmf_min_digit_seconds: Seconds = 0.04
    """Shortest DTMF digit (ITU-T Q.24 accepts 40 ms)."""
    dtmf_max_gap_seconds: float = Field(default=1.5, ge=0, le=10)
    """Digits closer than this form one sequence (one entry with all its digits)."""

    # --- naming
    match_tolerance_percent: float = Field(default=1.5, gt=0, le=10)
    """Default match tolerance of the sets. Adjacent tones of the Motorola tables are ~3.5% apart,
    so 1.5% names a tone without taking its neighbour; the detector errs by under 1 Hz (bench)."""
    sets: list[ToneSet] = Field(default_factory=list)
    """Named tone sets, e.g. [{name: "Station 7", tones: [1002.3, 1270.7]}]."""

    # --- transcription
    skip_tone_only: bool = True
    """A call that is only tones gets a ``skipped`` job (reason: the tones) instead of Whisper."""
    cut_from_transcription: bool = True
    """Cut the tones out of the audio Whisper sees in calls that also hold speech."""
    cut_margin_seconds: float = Field(default=0.05, ge=0, le=1)
    """Extra audio cut on each side of a tone (its ramp and the frame edge)."""
    speech_min_seconds: float = Field(default=0.5, ge=0)
    """A call is only tones when the audio left after cutting them holds less than this much above
    the noise floor (the same half second ``transcription.min_audio_seconds`` asks of a call)."""
    speech_above_floor_db: float = Field(default=10.0, gt=0)
    """A 20 ms frame counts as speech when this far above the remaining audio's floor (its 10th
    percentile frame): radio speech stands 15-17 dB above its hiss on the corpus."""

    # --- the analyze task's outbox
    sweep_max_age_seconds: float = Field(default=3600.0, gt=0)
    """The sweeper re-publishes analysis of calls received within this window and still not
    analysed: an hour of broker or worker outage loses no tone alert, while calls stored before
    tones existed (or older) are not all analysed at once, firing alerts for pages long past."""

    @model_validator(mode="after")
    def _ranges(self) -> ToneSettings:
        if self.min_hz >= self.max_hz:
            raise ValueError("min_hz must be below max_hz")
        if self.two_tone_a_min_seconds > self.two_tone_a_max_seconds:
            raise ValueError("two_tone_a_min_seconds must not exceed two_tone_a_max_seconds")
        if self.hi_low_min_seconds > self.hi_low_max_seconds:
            raise ValueError("hi_low_min_seconds must not exceed hi_low_max_seconds")
        return self
