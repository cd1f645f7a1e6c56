"""The radio pipeline's settings: one frozen dataclass, every knob with its default and its reason.

Kept apart from the code that reads it because the settings layer, the engine config and every
filter import it, and none of them should pull in the DSP or the phrase matcher to do so.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RadioOptions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RadioOptions:
    """Settings of the radio pipeline. Defaults are principled, not tuned to a corpus.

    Every step can be switched off; thresholds follow Whisper's own conventions
    where it has one (no-speech 0.6 with log-prob -1.0, compression ratio 2.4).
    Lists given as lists (YAML, JSON) are converted to tuples so the options stay
    hashable and immutable.
    """

    # --- audio conditioning (before VAD and ASR)
    highpass_hz: float | None = 80.0
    """Zero-phase high-pass corner. Radio audio carries no speech below ~300 Hz, but
    key-up thumps, DC offsets and hum do; 80 Hz removes them without touching speech."""
    suppress_tones: bool = True
    """Notch steady pure tones (two-tone pages, alert tones, DTMF) out before VAD: the
    segmentation model scores them as speech, and Whisper writes words over them."""
    tone_min_seconds: float = 0.4
    """A tone must stay on one frequency at least this long. Sustained vowels on the
    test speech stay under 0.21 s, dispatch tones last 0.5-3 s."""
    tone_purity: float = 0.9
    """Share of a frame's 250-3500 Hz energy within +-2 bins of its two strongest peaks."""
    normalize_loudness: bool = True
    """Scale the active level to ``target_dbfs``: recorders deliver calls from -40 to
    -6 dBFS, and quiet calls sit close to the VAD's and the codec's noise floor."""
    target_dbfs: float = -20.0
    max_gain_db: float = 20.0
    """Gain cap, so that hiss-only calls are not lifted to speech level."""

    # --- VAD and decoding
    vad_pad_seconds: float = 0.4
    """Padding added around VAD regions before decoding (faster-whisper's
    ``speech_pad_ms`` default is 400 ms): the VAD cuts weak onsets such as "the".
    At most 5 s, so a padded window still fits Whisper's 30 s."""
    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0,)
    """Decoding temperatures, tried in order while a segment's compression ratio
    exceeds ``compression_ratio_threshold``. The default is beam search only, which
    is deterministic; repetition loops are collapsed by the text filter anyway.
    Whisper's fallback is (0.0, 0.2, 0.4, 0.6, 0.8, 1.0); sampling makes a call's
    transcript vary between runs (ctranslate2's generators are per worker thread
    and cannot be re-seeded per call)."""
    compression_ratio_threshold: float | None = 2.4
    suppress_blank: bool = True
    initial_prompt: str | None = None
    """Default prompt (talkgroup vocabulary); a per-call prompt overrides it."""

    # --- language (multilingual models with no fixed language)
    language_min_seconds: float = 2.0
    """Detect only when VAD found at least this much speech; shorter calls use
    ``fallback_language`` (detection on a 1 s key-up returns confident nonsense)."""
    language_min_probability: float = 0.5
    fallback_language: str = "en"

    # --- text filters (see clean())
    drop_no_speech: bool = True
    no_speech_threshold: float = 0.6
    no_speech_logprob_threshold: float | None = -1.0
    """Whisper's rule: a segment is silence when no_speech_prob >= no_speech_threshold
    and avg_logprob < this. None drops on no_speech_prob alone."""
    drop_low_logprob: bool = True
    min_avg_logprob: float = -1.5
    """Floor on mean token log-probability (exp(-1.5) = 0.22 per token): below it the
    decoder was guessing, whatever the no-speech head says."""
    filter_phrases: bool = True
    builtin_phrases: bool = True
    phrase_files: tuple[str, ...] = ()
    """Extra phrase files (same format as ``rdio_tasks/data/hallucinations.txt``)."""
    phrase_confident_logprob: float = -0.3
    phrase_confident_no_speech: float = 0.2
    """A segment that is only an ambiguous phrase ("? thank you") is kept when
    avg_logprob >= phrase_confident_logprob and no_speech_prob <= phrase_confident_no_speech."""
    collapse_repetitions: bool = True
    repetition_min_repeats: int = 4
    """Collapse an n-gram repeated this many times in a row; number n-grams need twice
    as many, because "zero zero zero" is a real unit or address number."""
    repetition_max_ngram: int = 8
    drop_prompt_echo: bool = True
    prompt_echo_min_words: int = 3
    """An echo must repeat at least this many prompt words (or the whole prompt, if
    shorter), so that speech naming one unit from the prompt is kept."""
    replacements: tuple[tuple[str, str], ...] = ()
    """Case-insensitive whole-word replacements applied last, e.g. ("ten four", "10-4")."""

    def __post_init__(self) -> None:
        """Coerce list-shaped settings to tuples and reject impossible values early."""
        set_ = functools.partial(object.__setattr__, self)
        set_("temperatures", tuple(float(t) for t in self.temperatures))
        files = self.phrase_files
        set_("phrase_files", (str(files),) if isinstance(files, str | Path) else tuple(map(str, files)))
        set_("replacements", tuple((str(a), str(b)) for a, b in self.replacements))
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError("temperatures must be a non-empty list of values >= 0")
        if self.beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        for name in ("no_speech_threshold", "phrase_confident_no_speech", "tone_purity"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0 <= self.language_min_probability <= 1:
            raise ValueError("language_min_probability must be between 0 and 1")
        if self.repetition_min_repeats < 2 or self.repetition_max_ngram < 1:
            raise ValueError("repetition_min_repeats must be >= 2 and repetition_max_ngram >= 1")
        if self.prompt_echo_min_words < 1:
            raise ValueError("prompt_echo_min_words must be >= 1")
        if not 0 <= self.vad_pad_seconds <= 5:
            raise ValueError("vad_pad_seconds must be between 0 and 5")
        if self.max_gain_db < 0 or self.tone_min_seconds <= 0:
            raise ValueError("max_gain_db must be >= 0 and tone_min_seconds > 0")
        if any(not a.strip() for a, _ in self.replacements):
            raise ValueError("replacement patterns must not be empty")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RadioOptions:
        """Build from a settings mapping, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            logger.warning("ignoring unknown radio options: %s", ", ".join(unknown))
        return cls(**{k: v for k, v in values.items() if k in names})
