"""Radio-grade transcripts: audio conditioning and hallucination control for scanner calls.

Scanner calls are short, narrowband (8 kHz P25/FM), noisy, and often carry no speech
at all: a key-up, a squelch tail, a dispatch tone. Whisper was trained on subtitles,
so on such audio it writes what subtitles say at the end of a video ("Thank you.",
"Thanks for watching"), loops ("long, long, long"), or echoes its prompt. This
package holds the radio-specific parts of the pipeline, each switchable and each
recorded in the result so a user can see what was removed and why:

* :mod:`.options`: :class:`RadioOptions`, every knob with its default: the ``transcription.radio``
  settings model itself (:mod:`rdio_core.radio_settings`), validated when the settings load.
* :mod:`.conditioning`: :func:`prepare_audio`, DC/rumble high-pass, dispatch-tone notching and
  loudness normalisation before VAD and ASR (numpy, imported lazily).
* :mod:`.language`: :func:`choose_language`, language detection with a short-call fallback.
* :mod:`.phrases`: the hallucination phrase lists (``rdio_tasks/data/hallucinations.txt`` plus
  user files) and their matcher.
* :mod:`.filters`: :func:`clean`, the text filters applied to the decoder's raw segments
  (pure Python, no model needed, unit-tested in ``tests/test_radio.py``).
* :mod:`.numbers`: :func:`numbers_to_digits`, radio numbers written as digits for search and alerts.
* :mod:`.glossary`: a talkgroup's glossary as the gated decoder prompt and near-miss correction.

Importing this package loads neither numpy nor any model: the API process imports it.
"""

from __future__ import annotations

from rdio_tasks.radio.conditioning import (
    active_level_dbfs,
    find_tones,
    frame_levels_dbfs,
    highpass,
    normalize_level,
    prepare_audio,
    suppress_tones,
)
from rdio_tasks.radio.filters import REPETITION, CleanResult, apply_replacements, clean, collapse_repetitions
from rdio_tasks.radio.glossary import correct_near_misses, glossary_prompt
from rdio_tasks.radio.language import choose_language
from rdio_tasks.radio.numbers import numbers_to_digits
from rdio_tasks.radio.options import RadioOptions
from rdio_tasks.radio.phrases import BUILTIN_PHRASES, PhraseList, load_phrases, parse_phrases, phrase_tokens

__all__ = [
    "BUILTIN_PHRASES",
    "REPETITION",
    "CleanResult",
    "PhraseList",
    "RadioOptions",
    "active_level_dbfs",
    "apply_replacements",
    "choose_language",
    "clean",
    "collapse_repetitions",
    "correct_near_misses",
    "find_tones",
    "frame_levels_dbfs",
    "glossary_prompt",
    "highpass",
    "load_phrases",
    "normalize_level",
    "numbers_to_digits",
    "parse_phrases",
    "phrase_tokens",
    "prepare_audio",
    "suppress_tones",
]
