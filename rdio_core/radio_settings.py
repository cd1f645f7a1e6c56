"""``transcription.radio``: the radio pipeline's settings, every knob with its default and its reason.

One frozen pydantic model, validated when the settings load: a typo (``no_such_option``) or an
impossible value (``beam_size: 0``) stops the program with one line naming the key, instead of
loading fine and then failing every job. The worker uses the same object as its per-call options
(``rdio_tasks.radio.RadioOptions`` is this class), so there is no second list of fields to keep in
step. It lives in ``rdio_core`` because the settings tree holds it and ``rdio_core`` imports nothing
from the worker; it pulls in neither numpy nor any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RadioSettings"]

UnitInterval = Annotated[float, Field(ge=0, le=1)]


class RadioSettings(BaseModel):
    """Settings of the radio pipeline. Defaults are principled, not tuned to a corpus.

    Every step can be switched off; thresholds follow Whisper's own conventions
    where it has one (no-speech 0.6 with log-prob -1.0, compression ratio 2.4).
    Lists given as lists (YAML, JSON) become tuples, so the options stay hashable
    (the engine cache compares configs, the phrase cache keys on files) and immutable.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """False runs plain WhisperX (its default options, none of the steps below)."""

    # --- audio conditioning (before VAD and ASR)
    highpass_hz: float | None = Field(default=80.0, gt=0)
    """Zero-phase high-pass corner. Radio audio carries no speech below ~300 Hz, but
    key-up thumps, DC offsets and hum do; 80 Hz removes them without touching speech."""
    suppress_tones: bool = True
    """Notch steady pure tones (two-tone pages, alert tones, DTMF) out before VAD: the
    segmentation model scores them as speech, and Whisper writes words over them."""
    tone_min_seconds: float = Field(default=0.4, gt=0)
    """A tone must stay on one frequency at least this long. Sustained vowels on the
    test speech stay under 0.21 s, dispatch tones last 0.5-3 s."""
    tone_purity: UnitInterval = 0.9
    """Share of a frame's 250-3500 Hz energy within +-2 bins of its two strongest peaks."""
    normalize_loudness: bool = True
    """Scale the active level to ``target_dbfs``: recorders deliver calls from -40 to
    -6 dBFS, and quiet calls sit close to the VAD's and the codec's noise floor."""
    target_dbfs: float = Field(default=-20.0, le=0)
    """Active speech level after normalisation (dBFS, so at most 0)."""
    max_gain_db: float = Field(default=20.0, ge=0)
    """Gain cap, so that hiss-only calls are not lifted to speech level."""

    # --- VAD and decoding
    vad_cut: bool = True
    """Decode only the VAD's speech regions. False decodes the whole call (in 30 s windows): for the
    ablation in ``bench/quality.py``, and for calls whose every second is wanted."""
    vad_onset: float | None = Field(default=0.3, gt=0, lt=1)
    """Speech-start threshold of the VAD in the radio pipeline (None: ``transcription.vad_onset``,
    0.5, whisperx's default). On held-out real P25 calls (base) onset/offset 0.3/0.2 cut WER from
    0.498 to 0.454 with no junk words: the default drops weak call endings. What the lower
    thresholds let through that is not speech, the speech decision (``speech_decision``) drops."""
    vad_offset: float | None = Field(default=0.2, gt=0, lt=1)
    """Speech-end threshold of the VAD in the radio pipeline (None: ``transcription.vad_offset``, 0.363)."""
    vad_pad_seconds: float = Field(default=0.4, ge=0, le=5)
    """Padding added around VAD regions before decoding (faster-whisper's
    ``speech_pad_ms`` default is 400 ms): the VAD cuts weak onsets such as "the".
    At most 5 s, so a padded window still fits Whisper's 30 s."""
    beam_size: int = Field(default=5, ge=1)
    """Beam width of the decoder (faster-whisper's default)."""
    temperatures: tuple[Annotated[float, Field(ge=0)], ...] = Field(default=(0.0,), min_length=1)
    """Decoding temperatures, tried in order while a segment's compression ratio
    exceeds ``compression_ratio_threshold``. The default is beam search only, which
    is deterministic; repetition loops are collapsed by the text filter anyway.
    Whisper's fallback is (0.0, 0.2, 0.4, 0.6, 0.8, 1.0); sampling makes a call's
    transcript vary between runs (ctranslate2's generators are per worker thread
    and cannot be re-seeded per call)."""
    compression_ratio_threshold: float | None = 2.4
    """gzip compression ratio above which a segment counts as a repetition loop."""
    suppress_blank: bool = True
    """Forbid a blank first token (Whisper's default)."""
    max_new_tokens: int | None = Field(default=None, ge=1, le=440)
    """Most tokens decoded per 30 s window (None: the model's limit, 448 with the prompt). A radio
    call's window holds 15-40 tokens of speech; a cap bounds the cost of a hallucination loop, and
    fixes the decode length when benchmarking a model with random weights (bench/gpu)."""
    initial_prompt: str | None = None
    """Default prompt (talkgroup vocabulary); a per-call prompt overrides it."""

    # --- language (multilingual models with no fixed language)
    language_min_seconds: float = Field(default=2.0, ge=0)
    """Detect only when VAD found at least this much speech; shorter calls use
    ``fallback_language`` (detection on a 1 s key-up returns confident nonsense)."""
    language_min_probability: UnitInterval = 0.5
    """Below this detection probability the call uses ``fallback_language``."""
    fallback_language: str = "en"
    """Language of calls too short or too unclear to detect."""

    # --- text filters (rdio_tasks.radio.filters.clean)
    drop_no_speech: bool = True
    """Drop segments Whisper's no-speech head calls silence."""
    no_speech_threshold: UnitInterval = 0.6
    """no_speech_prob at or above which a segment may be silence."""
    no_speech_logprob_threshold: float | None = -1.0
    """Whisper's rule: a segment is silence when no_speech_prob >= no_speech_threshold
    and avg_logprob < this. None drops on no_speech_prob alone."""
    speech_decision: Literal["evidence", "threshold"] = "evidence"
    """How a decoded segment is judged silence. ``threshold``: Whisper's rule (no_speech_prob and
    log-prob both past their thresholds) or the log-prob floor alone. ``evidence``: three votes,
    no_speech_prob >= no_speech_threshold, avg_logprob < no_speech_logprob_threshold, and the VAD's
    speech probability over the window < vad_speech_score; two votes drop the segment, so a low
    log-prob alone (vocoded speech the decoder is unsure of) no longer drops words that the VAD and
    the no-speech head both call speech, and a fluent hallucination (a prompt's words, a "Thank you"
    over a squelch tail) goes when the VAD and the no-speech head both call it silence. Segments
    without a VAD score (``vad_cut: false``) use ``threshold``."""
    vad_speech_score: UnitInterval = 0.6
    """The VAD vote: a window whose 90th-percentile VAD speech probability is below this. On the
    vocoded corpus speech windows score 0.79-0.96, windows of tones, data bursts, corrupt voice
    frames and key-ups at most 0.74 (means)."""
    drop_low_logprob: bool = True
    """Drop segments whose mean token log-probability is under ``min_avg_logprob``."""
    min_avg_logprob: float = -1.5
    """Floor on mean token log-probability (exp(-1.5) = 0.22 per token): below it the
    decoder was guessing, whatever the no-speech head says."""
    filter_phrases: bool = True
    """Drop segments made only of known hallucination phrases ("Thanks for watching")."""
    builtin_phrases: bool = True
    """Use the shipped list (``rdio_tasks/data/hallucinations.txt``)."""
    phrase_files: tuple[str, ...] = ()
    """Extra phrase files (same format as ``rdio_tasks/data/hallucinations.txt``)."""
    phrase_confident_logprob: float = -0.3
    """See ``phrase_confident_no_speech``."""
    phrase_confident_no_speech: UnitInterval = 0.2
    """A segment that is only an ambiguous phrase ("? thank you") is kept when
    avg_logprob >= phrase_confident_logprob and no_speech_prob <= phrase_confident_no_speech."""
    collapse_repetitions: bool = True
    """Collapse runaway repetition ("long, long, long, long")."""
    repetition_min_repeats: int = Field(default=4, ge=2)
    """Collapse an n-gram repeated this many times in a row; number n-grams need twice
    as many, because "zero zero zero" is a real unit or address number."""
    repetition_max_ngram: int = Field(default=8, ge=1)
    """Longest repeated n-gram looked for, in words."""
    drop_prompt_echo: bool = True
    """Drop segments that only repeat the prompt (Whisper echoes it over silence)."""
    prompt_echo_min_words: int = Field(default=3, ge=1)
    """An echo must repeat at least this many prompt words (or the whole prompt, if
    shorter), so that speech naming one unit from the prompt is kept."""
    replacements: tuple[tuple[str, str], ...] = ()
    """Case-insensitive whole-word replacements, e.g. ("ten four", "10-4"), applied first of the
    rewrites below."""
    digits: bool = True
    """Write spelled radio numbers as digits ("ten four" -> 10-4, "one zero four three" -> 1043,
    "Engine five" -> Engine 5), so search and alerts find them (rdio_tasks/radio/numbers.py)."""

    # --- glossary (transcription.glossary, per system/talkgroup; rdio_tasks/radio/glossary.py)
    glossary_prompt: bool = True
    """Decode again with the glossary as the prompt, only the windows the unprompted decode kept as
    speech: the prompt fixes spellings but cannot put words into a silent call."""
    glossary_correct: bool = True
    """Rewrite word runs spelled almost like a glossary term to the term (numbers must match)."""
    glossary_min_similarity: UnitInterval = 0.8
    """difflib similarity of the letters at or above which a word run becomes a glossary term."""

    @field_validator("phrase_files", mode="before")
    @classmethod
    def _one_or_many_files(cls, value: Any) -> Any:
        """A single file may be given as a string (or Path); paths are kept as strings."""
        if isinstance(value, str | Path):
            return (str(value),)
        if isinstance(value, list | tuple):
            return tuple(str(v) if isinstance(v, Path) else v for v in value)
        return value

    @field_validator("replacements")
    @classmethod
    def _patterns_not_empty(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        if any(not pattern.strip() for pattern, _ in value):
            raise ValueError("replacement patterns must not be empty")
        return value
