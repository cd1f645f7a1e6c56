"""Which language to decode a call with, given what the detector said and how much speech it heard."""

from __future__ import annotations

from rdio_tasks.radio.options import RadioOptions

__all__ = ["choose_language"]


def choose_language(
    detected: str | None,
    probability: float | None,
    speech_seconds: float,
    options: RadioOptions,
    default: str | None = None,
) -> tuple[str, str | None]:
    """The language to decode with, and a note when the detection was not used.

    Whisper's detector looks at 30 s; a scanner call has a few seconds of speech,
    sometimes less than one, and on that it can name a language with confidence
    for no reason. Below ``language_min_seconds`` of VAD speech, or below
    ``language_min_probability``, the configured default wins.
    """
    fallback = (default or options.fallback_language).strip().lower()
    if speech_seconds < options.language_min_seconds:
        found = f"detected {detected!r} (p={probability or 0:.2f}) from " if detected else "only "
        return fallback, (
            f"{found}{speech_seconds:.1f}s of speech, under language_min_seconds="
            f"{options.language_min_seconds}; using {fallback!r}"
        )
    if detected is None:
        return fallback, f"no language detected; using {fallback!r}"
    if probability is not None and probability < options.language_min_probability:
        return fallback, (
            f"detected {detected!r} with p={probability:.2f} < language_min_probability="
            f"{options.language_min_probability}; using {fallback!r}"
        )
    return detected, None
