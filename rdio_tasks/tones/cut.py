"""Keep tones from Whisper: cut them out of the audio it sees, and tell a call that is only tones.

Cut, not silenced. The radio pipeline found that a hole muted into the audio is scored by the
segmentation model as an onset (``rdio_tasks.radio.conditioning.suppress_tones``), so silence where a
page was invites a hallucinated segment; cutting also saves the model the tone's seconds. Times stay
meaningful: :meth:`Cuts.restore` maps every segment and word time of the transcript back onto the
stored audio, which the console plays and units are attributed against. Each join gets a 10 ms
cross-fade so the cut itself is not a click.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rdio_core.tone_settings import ToneSettings
from rdio_tasks.tones.detect import detect_tones
from rdio_tasks.tones.model import Tone, describe

if TYPE_CHECKING:
    from rdio_tasks.asr.result import TranscriptionResult

FADE_SECONDS = 0.010
SPEECH_FRAME_SECONDS = 0.020


@dataclass(frozen=True)
class Cuts:
    """Spans removed from the original audio, in seconds, sorted and disjoint."""

    spans: tuple[tuple[float, float], ...] = ()
    _kept_starts: tuple[float, ...] = field(default=(), repr=False)  # where each span sits in the cut audio

    @classmethod
    def of(cls, spans: Sequence[tuple[float, float]]) -> Cuts:
        removed, starts = 0.0, []
        for start, end in spans:
            starts.append(start - removed)
            removed += end - start
        return cls(tuple(spans), tuple(starts))

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.spans)

    def original_time(self, t: float, *, is_end: bool = False) -> float:
        """Where ``t`` (seconds into the cut audio) lies in the original. At a join, a start maps to
        after the removed span and an end to before it."""
        i = bisect_left(self._kept_starts, t) if is_end else bisect_right(self._kept_starts, t)
        return t + sum(end - start for start, end in self.spans[:i])

    def restore(self, segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Segments (and their words) with times on the original audio."""
        if not self.spans:
            return segments
        out = []
        for seg in segments:
            seg = dict(seg)
            self._shift(seg)
            if isinstance(seg.get("words"), list):
                seg["words"] = [self._shift(dict(w)) for w in seg["words"]]
            out.append(seg)
        return out

    def _shift(self, item: dict[str, Any]) -> dict[str, Any]:
        for key, is_end in (("start", False), ("end", True)):
            if isinstance(item.get(key), int | float):
                item[key] = round(self.original_time(float(item[key]), is_end=is_end), 3)
        return item


def tone_spans(tones: Sequence[Tone], duration: float, margin: float) -> list[tuple[float, float]]:
    """The tones' spans widened by ``margin``, clipped to the audio, overlaps merged."""
    spans: list[tuple[float, float]] = []
    for tone in sorted(tones, key=lambda t: t.start):
        start, end = max(0.0, tone.start - margin), min(duration, tone.end + margin)
        if end <= start:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def cut_tones(
    audio: np.ndarray, sample_rate: int, tones: Sequence[Tone], margin: float
) -> tuple[np.ndarray, Cuts]:
    """``audio`` without the tones' spans, and the cuts to map transcript times back."""
    spans = tone_spans(tones, audio.shape[0] / sample_rate, margin)
    if not spans:
        return audio, Cuts()
    pieces, at = [], 0
    for start, end in spans:
        pieces.append(audio[at : round(start * sample_rate)])
        at = round(end * sample_rate)
    pieces.append(audio[at:])
    fade = max(1, int(FADE_SECONDS * sample_rate))
    out = []
    for i, piece in enumerate(pieces):
        piece = piece.astype(np.float32, copy=True)
        n = min(fade, piece.shape[0])
        if i > 0 and n:
            piece[:n] *= np.linspace(0.0, 1.0, n, dtype=np.float32)
        if i < len(pieces) - 1 and n:
            piece[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
        out.append(piece)
    return np.concatenate(out), Cuts.of(spans)


def speech_seconds(audio: np.ndarray, sample_rate: int, settings: ToneSettings) -> float:
    """How much of ``audio`` stands out from its noise floor: 20 ms frames at least
    ``speech_above_floor_db`` over the 10th-percentile frame and above ``min_level_dbfs``."""
    n = max(1, int(SPEECH_FRAME_SECONDS * sample_rate))
    usable = audio.shape[0] // n * n
    if usable == 0:
        return 0.0
    power = np.mean(np.square(audio[:usable].reshape(-1, n), dtype=np.float64), axis=1)
    levels = 10 * np.log10(power + 1e-20)
    floor = float(np.percentile(levels, 10))
    active = (levels >= floor + settings.speech_above_floor_db) & (levels >= settings.min_level_dbfs)
    return float(active.sum() * n / sample_rate)


def only_tones(audio: np.ndarray, sample_rate: int, tones: Sequence[Tone], settings: ToneSettings) -> bool:
    """True when the call holds tones and, once they are cut, less than ``speech_min_seconds`` of
    anything above the noise floor: nothing for Whisper to transcribe."""
    if not tones:
        return False
    rest, _ = cut_tones(audio, sample_rate, tones, settings.cut_margin_seconds)
    return speech_seconds(rest, sample_rate, settings) < settings.speech_min_seconds


@dataclass(frozen=True)
class WhisperInput:
    """What the transcription worker hands Whisper: the audio with tones cut, the cuts to map the
    transcript back, the tones, and why not to transcribe at all (a call that is only tones)."""

    audio: np.ndarray
    cuts: Cuts
    tones: list[Tone]
    skip_reason: str | None = None

    def restore(self, result: TranscriptionResult, original_seconds: float) -> TranscriptionResult:
        """``result`` (of the cut audio) with every time on the original audio, its length the
        original's, and the cut spans noted in ``preprocessing["tones_cut"]``."""
        if not self.cuts.spans:
            return result
        return dataclasses.replace(
            result,
            segments=self.cuts.restore(result.segments),
            raw_segments=self.cuts.restore(result.raw_segments),
            removed=self.cuts.restore(result.removed),
            audio_seconds=round(original_seconds, 3),
            preprocessing={
                **result.preprocessing,
                "tones_cut": [[round(a, 3), round(b, 3)] for a, b in self.cuts.spans],
            },
        )


def whisper_input(
    audio: np.ndarray, sample_rate: int, stored: list[dict[str, Any]] | None, settings: ToneSettings
) -> WhisperInput:
    """The call's stored tones (``calls.tones``, written by the analyze task) when it has them,
    else tones detected here; then skip or cut as ``settings`` say."""
    if not settings.enabled:
        return WhisperInput(audio, Cuts(), [])
    tones = (
        [Tone.from_json(t) for t in stored]
        if stored is not None
        else detect_tones(audio, sample_rate, settings)
    )
    if not tones:
        return WhisperInput(audio, Cuts(), tones)
    if settings.skip_tone_only and only_tones(audio, sample_rate, tones, settings):
        reason = "only dispatch tones, no speech: " + "; ".join(describe(t) for t in tones)
        return WhisperInput(audio, Cuts(), tones, skip_reason=reason)
    if not settings.cut_from_transcription:
        return WhisperInput(audio, Cuts(), tones)
    cut, cuts = cut_tones(audio, sample_rate, tones, settings.cut_margin_seconds)
    return WhisperInput(cut, cuts, tones)
