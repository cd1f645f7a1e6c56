"""The shape of a transcribed call (:class:`TranscriptionResult`) and the numbers derived for it.

One definition, JSON-ready, shared by the Celery result, the database row and the tests; the
engine fills it from a :class:`Decoded` (one mode's output) after alignment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decoded", "TranscriptionResult", "confidence", "json_safe"]


@dataclass
class TranscriptionResult:
    """One transcribed call, JSON-ready through :meth:`to_dict`.

    ``confidence`` is the duration-weighted mean over segments of
    ``exp(avg_logprob)``, i.e. the geometric-mean token probability of the decoded
    text; it is ``None`` when nothing was decoded (or everything was removed).

    Radio pipeline fields: ``text``/``segments`` are the cleaned transcript, while
    ``raw_text``/``raw_segments`` keep what the model produced and ``removed`` says
    what was cut and why (``{"segment", "start", "end", "text", "reason", "detail"}``,
    ``segment`` indexing ``raw_segments``). ``no_speech`` is true when nothing is
    left (no speech found by VAD, or everything filtered). ``filters`` lists the
    filters that ran, ``preprocessing`` the audio conditioning and VAD facts
    (gain, muted tones, speech seconds), ``language_note`` why a detected language
    was not used. In plain mode the raw and cleaned fields are equal.
    """

    text: str
    segments: list[dict[str, Any]]
    language: str | None
    language_probability: float | None
    model: str
    device: str
    compute_type: str
    audio_seconds: float
    processing_ms: float
    real_time_factor: float
    aligned: bool
    alignment_note: str | None
    confidence: float | None
    mode: str = "plain"  # "radio" | "plain"
    raw_text: str = ""
    raw_segments: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    no_speech: bool = False
    filters: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    language_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (floats and lists only) for Celery results and the database."""
        return dataclasses.asdict(self)


@dataclass
class Decoded:
    """One mode's output before alignment and JSON clean-up."""

    segments: list[dict[str, Any]]
    raw_segments: list[dict[str, Any]]
    language: str | None
    language_probability: float | None
    removed: list[dict[str, Any]] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    language_note: str | None = None


def json_safe(value: Any) -> Any:
    """numpy scalars -> Python, NaN -> None, recursively; keeps to_dict() JSON-safe."""
    import numpy as np

    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def confidence(segments: list[dict[str, Any]]) -> float | None:
    """Duration-weighted mean of exp(avg_logprob).

    Weighted by duration so that a 0.3 s blip with a poor score does not pull
    down a 25 s call as much as the call itself.
    """
    num = den = 0.0
    for seg in segments:
        lp = seg.get("avg_logprob")
        if lp is None or not math.isfinite(lp):
            continue
        weight = max(float(seg["end"]) - float(seg["start"]), 1e-3)
        num += weight * math.exp(lp)
        den += weight
    return num / den if den else None
