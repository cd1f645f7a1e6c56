"""Radio-grade transcripts: audio conditioning and hallucination control for scanner calls.

Scanner calls are short, narrowband (8 kHz P25/FM), noisy, and often carry no speech
at all: a key-up, a squelch tail, a dispatch tone. Whisper was trained on subtitles,
so on such audio it writes what subtitles say at the end of a video ("Thank you.",
"Thanks for watching"), loops ("long, long, long"), or echoes its prompt. This
module holds the radio-specific parts of the pipeline, each switchable and each
recorded in the result so a user can see what was removed and why:

* :class:`RadioOptions`: every knob, with defaults; the settings layer mirrors it.
* :func:`prepare_audio`: DC/rumble high-pass, dispatch-tone notching and loudness
  normalisation before VAD and ASR (numpy, imported lazily).
* :func:`choose_language`: language detection with a short-call fallback.
* :func:`clean`: the text filters applied to the decoder's raw segments
  (pure Python, no model needed, unit-tested in ``tests/test_radio.py``).

Importing this module loads neither numpy nor any model: the API process imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdio_tasks.text_normalize import normalize_words

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BUILTIN_PHRASES",
    "CleanResult",
    "PhraseList",
    "RadioOptions",
    "apply_replacements",
    "choose_language",
    "clean",
    "collapse_repetitions",
    "find_tones",
    "load_phrases",
    "phrase_tokens",
    "prepare_audio",
    "suppress_tones",
]

logger = logging.getLogger(__name__)

BUILTIN_PHRASES = Path(__file__).resolve().parent / "data" / "hallucinations.txt"
SAMPLE_RATE = 16000

# Removal reasons (the "reason" of each entry in CleanResult.removed).
NO_SPEECH = "no_speech"
LOW_LOGPROB = "low_logprob"
REPETITION = "repetition"
PROMPT_ECHO = "prompt_echo"
PHRASE = "hallucination_phrase"
EMPTY = "empty"


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


# --------------------------------------------------------------------------- results


@dataclass
class CleanResult:
    """What :func:`clean` kept and removed. The caller keeps the raw segments itself.

    ``removed`` entries are ``{"segment", "start", "end", "text", "reason", "detail"}``
    where ``segment`` is the index into the raw segments and ``text`` is what was cut
    (the whole segment, or the repeated words for ``repetition``).
    """

    text: str
    segments: list[dict[str, Any]]
    removed: list[dict[str, Any]] = field(default_factory=list)
    no_speech: bool = False
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- phrases


@dataclass(frozen=True)
class PhraseList:
    """Hallucination phrases as normalised token tuples.

    ``always``: removed whenever a segment consists only of them. ``ambiguous``:
    phrases that are also real radio speech, removed only from unconfident
    segments. ``prefixes``: "phrase *" lines, matching the phrase and anything after.
    """

    always: frozenset[tuple[str, ...]] = frozenset()
    ambiguous: frozenset[tuple[str, ...]] = frozenset()
    prefixes: frozenset[tuple[str, ...]] = frozenset()

    def __len__(self) -> int:
        return len(self.always) + len(self.ambiguous) + len(self.prefixes)

    def match(self, tokens: Sequence[str]) -> str | None:
        """ "always" or "ambiguous" when ``tokens`` is made only of phrases, else None.

        A segment may chain several phrases ("thank you bye"); it is "always" when
        some way of splitting it uses no ambiguous phrase. Dynamic programming over
        token positions; phrases are a few words, so this is cheap.
        """
        n = len(tokens)
        if n == 0:
            return None
        best: list[int | None] = [None] * (n + 1)  # fewest ambiguous phrases to reach i
        best[0] = 0
        lengths = sorted({len(p) for p in self.always | self.ambiguous | self.prefixes})
        for i in range(n):
            if best[i] is None:
                continue
            for length in lengths:
                piece = tuple(tokens[i : i + length])
                if len(piece) < length:
                    break
                if piece in self.prefixes:
                    best[n] = _min_opt(best[n], best[i])
                if piece in self.always:
                    best[i + length] = _min_opt(best[i + length], best[i])
                elif piece in self.ambiguous:
                    best[i + length] = _min_opt(best[i + length], best[i] + 1)
        if best[n] is None:
            return None
        return "always" if best[n] == 0 else "ambiguous"


def _min_opt(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


_ELONGATED = re.compile(r"([a-z])\1{2,}")


def phrase_tokens(text: str) -> tuple[str, ...]:
    """Normalised words for phrase matching, with letters held 3+ times squeezed to one.

    Whisper spells the sounds it hears in noise and data bursts as drawn-out
    interjections ("Ahhh!", "Hmmmm", "Ohhh"); squeezing makes them match the
    plain fillers in the list ("ah", "hm", "oh") however long they are drawn.
    """
    return tuple(_ELONGATED.sub(r"\1", token) for token in normalize_words(text))


def parse_phrases(lines: Iterable[str]) -> PhraseList:
    """Parse the phrase file format described in ``data/hallucinations.txt``."""
    always: set[tuple[str, ...]] = set()
    ambiguous: set[tuple[str, ...]] = set()
    prefixes: set[tuple[str, ...]] = set()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        target = always
        if line.startswith("?"):
            target, line = ambiguous, line[1:].strip()
        if line.endswith("*"):
            target, line = prefixes, line[:-1].strip()
        tokens = phrase_tokens(line)
        if tokens:
            target.add(tokens)
    return PhraseList(frozenset(always), frozenset(ambiguous - always), frozenset(prefixes))


def load_phrases(options: RadioOptions) -> PhraseList:
    """The built-in list (unless disabled) plus ``options.phrase_files``.

    Cached per (file, modification time), so editing a user file takes effect on
    the next call without a worker restart, and unchanged files are not re-read.
    A missing user file is logged and skipped: a typo in settings must not fail
    every transcription.
    """
    paths = ([BUILTIN_PHRASES] if options.builtin_phrases else []) + [
        Path(p).expanduser() for p in options.phrase_files
    ]
    stamped: list[tuple[str, float]] = []
    for path in paths:
        try:
            stamped.append((str(path), path.stat().st_mtime))
        except OSError as exc:
            logger.warning("hallucination phrase file %s not readable: %s", path, exc)
    return _load_phrase_files(tuple(stamped))


@functools.lru_cache(maxsize=16)
def _load_phrase_files(stamped: tuple[tuple[str, float], ...]) -> PhraseList:
    lines: list[str] = []
    for path, _mtime in stamped:
        try:
            lines.extend(Path(path).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("hallucination phrase file %s not readable: %s", path, exc)
    return parse_phrases(lines)


# --------------------------------------------------------------------------- text filters


def clean(
    raw_segments: Sequence[Mapping[str, Any]],
    options: RadioOptions | None = None,
    *,
    prompt: str | None = None,
) -> CleanResult:
    """Apply the hallucination filters to decoded segments, in this order.

    1. No segments at all (the VAD found no speech): ``no_speech``.
    2. Confidence gates: Whisper's no-speech rule, then a log-probability floor.
    3. Runaway repetition is collapsed to one occurrence (the segment stays).
    4. With a prompt: a segment that only repeats the prompt is dropped.
    5. A segment made only of hallucination phrases is dropped ("always" phrases
       unconditionally, ambiguous ones unless the segment is confident); then the
       same test on the whole remaining transcript, for phrases split across segments.
    6. Word replacements on what is left.

    The input is not modified; kept segments are copies with an updated ``text``.
    """
    options = options or RadioOptions()
    phrases = load_phrases(options) if options.filter_phrases else PhraseList()
    result = CleanResult(text="", segments=[], steps=_steps(options, prompt, phrases))
    if not raw_segments:
        result.no_speech = True
        return result

    kept: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raw_segments):
        seg = _copy_segment(raw)
        why = _filter_segment(seg, options, phrases, prompt, index, result.removed)
        if why is None:
            kept.append((index, seg))
        else:
            result.removed.append(_removal(index, seg, seg["text"], *why))

    if options.filter_phrases and len(kept) > 1:
        kept = _drop_phrase_only_transcript(kept, options, phrases, result.removed)

    for _, seg in kept:
        seg["text"] = apply_replacements(seg["text"], options.replacements)
    result.segments = [seg for _, seg in kept if seg["text"]]
    result.text = " ".join(seg["text"] for seg in result.segments).strip()
    result.no_speech = not result.text
    result.removed.sort(key=lambda r: r["segment"])
    return result


def _steps(options: RadioOptions, prompt: str | None, phrases: PhraseList) -> list[str]:
    """Names of the text filters that ran, for the result (what was checked, not what fired)."""
    steps = ["vad"]
    if options.drop_no_speech:
        steps.append(NO_SPEECH)
    if options.drop_low_logprob:
        steps.append(LOW_LOGPROB)
    if options.collapse_repetitions:
        steps.append(REPETITION)
    if options.drop_prompt_echo and prompt and prompt.strip():
        steps.append(PROMPT_ECHO)
    if options.filter_phrases and len(phrases):
        steps.append(PHRASE)
    if options.replacements:
        steps.append("replacements")
    return steps


def _copy_segment(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose nested lists (word timings) are copied too, so the raw stays intact."""
    seg = {k: (list(v) if isinstance(v, list) else v) for k, v in raw.items()}
    seg["text"] = str(seg.get("text") or "").strip()
    return seg


def _filter_segment(
    seg: dict[str, Any],
    options: RadioOptions,
    phrases: PhraseList,
    prompt: str | None,
    index: int,
    removed: list[dict[str, Any]],
) -> tuple[str, str] | None:
    """(reason, detail) when the segment must go; may shorten ``seg["text"]`` in place."""
    gate = _confidence_gate(seg, options)
    if gate is not None:
        return gate
    if options.collapse_repetitions:
        seg["text"], cut = collapse_repetitions(
            seg["text"], options.repetition_min_repeats, options.repetition_max_ngram
        )
        for text, times in cut:
            removed.append(_removal(index, seg, text, REPETITION, f"repeated {times} times; one kept"))
    tokens = normalize_words(seg["text"])
    if not tokens:
        return EMPTY, "no words left"
    if options.drop_prompt_echo and prompt and _is_prompt_echo(tokens, prompt, options):
        return PROMPT_ECHO, "only repeats the initial prompt"
    if options.filter_phrases:
        kind = phrases.match(phrase_tokens(seg["text"]))
        if kind == "always" or (kind == "ambiguous" and not _confident(seg, options)):
            return PHRASE, f"{kind} phrase{_scores(seg)}"
    return None


def _confidence_gate(seg: Mapping[str, Any], options: RadioOptions) -> tuple[str, str] | None:
    """Whisper's no-speech rule and a log-prob floor; missing scores never drop a segment."""
    nsp = _score(seg, "no_speech_prob")
    lp = _score(seg, "avg_logprob")
    if options.drop_no_speech and nsp is not None and nsp >= options.no_speech_threshold:
        floor = options.no_speech_logprob_threshold
        if floor is None or lp is None or lp < floor:
            return NO_SPEECH, f"no_speech_prob {nsp:.2f} >= {options.no_speech_threshold}{_scores(seg)}"
    if options.drop_low_logprob and lp is not None and lp < options.min_avg_logprob:
        return LOW_LOGPROB, f"avg_logprob {lp:.2f} < {options.min_avg_logprob}"
    return None


def _confident(seg: Mapping[str, Any], options: RadioOptions) -> bool:
    """Whether the decoder was sure it heard speech (used to spare real "thank you"s)."""
    lp = _score(seg, "avg_logprob")
    nsp = _score(seg, "no_speech_prob")
    if lp is None or lp < options.phrase_confident_logprob:
        return False
    return nsp is None or nsp <= options.phrase_confident_no_speech


def _score(seg: Mapping[str, Any], key: str) -> float | None:
    value = seg.get(key)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _scores(seg: Mapping[str, Any]) -> str:
    parts = [
        f"{key} {value:.2f}"
        for key in ("avg_logprob", "no_speech_prob")
        if (value := _score(seg, key)) is not None
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _removal(index: int, seg: Mapping[str, Any], text: str, reason: str, detail: str) -> dict[str, Any]:
    return {
        "segment": index,
        "start": seg.get("start"),
        "end": seg.get("end"),
        "text": text,
        "reason": reason,
        "detail": detail,
    }


def _drop_phrase_only_transcript(
    kept: list[tuple[int, dict[str, Any]]],
    options: RadioOptions,
    phrases: PhraseList,
    removed: list[dict[str, Any]],
) -> list[tuple[int, dict[str, Any]]]:
    """Whole-transcript phrase test, for a phrase split over segments ("Thanks for" | "watching")."""
    tokens = [t for _, seg in kept for t in phrase_tokens(seg["text"])]
    kind = phrases.match(tokens)
    if kind is None:
        return kept
    if kind == "ambiguous" and all(_confident(seg, options) for _, seg in kept):
        return kept
    for index, seg in kept:
        removed.append(_removal(index, seg, seg["text"], PHRASE, f"whole transcript is a {kind} phrase"))
    return []


def _is_prompt_echo(tokens: Sequence[str], prompt: str, options: RadioOptions) -> bool:
    """Whether ``tokens`` is a run of the prompt's words, long enough to be an echo.

    Whisper reproduces (part of) its prompt when the audio gives it nothing to
    transcribe. A short match is kept: the prompt lists vocabulary such as unit
    names, and a call saying "Engine 5" must survive a prompt containing "Engine 5".
    """
    prompt_tokens = normalize_words(prompt)
    needed = min(options.prompt_echo_min_words, len(prompt_tokens))
    if not prompt_tokens or len(tokens) < needed:
        return False
    n = len(tokens)
    return any(list(prompt_tokens[i : i + n]) == list(tokens) for i in range(len(prompt_tokens) - n + 1))


def collapse_repetitions(
    text: str, min_repeats: int = 4, max_ngram: int = 8
) -> tuple[str, list[tuple[str, int]]]:
    """Collapse any n-gram repeated ``min_repeats`` or more times in a row to one copy.

    Words are compared after normalisation ("long," == "Long"). An n-gram made only
    of numbers needs twice the repeats: digit strings ("zero zero zero") are real
    unit, address and plate numbers. Returns the new text and, for each collapse,
    (the removed words, how many times the n-gram occurred).
    """
    words = text.split()
    keys = [" ".join(normalize_words(w)) for w in words]
    out: list[str] = []
    cut: list[tuple[str, int]] = []
    i = 0
    while i < len(words):
        size, times = _longest_repeat(keys, i, min_repeats, max_ngram)
        if size:
            out.extend(words[i : i + size])
            cut.append((" ".join(words[i + size : i + size * times]), times))
            i += size * times
        else:
            out.append(words[i])
            i += 1
    return " ".join(out), cut


def _longest_repeat(keys: Sequence[str], i: int, min_repeats: int, max_ngram: int) -> tuple[int, int]:
    """(n-gram size, repeat count) of the repetition covering most words from ``i``, or (0, 0)."""
    best = (0, 0)
    for size in range(1, max_ngram + 1):
        gram = keys[i : i + size]
        if len(gram) < size or not all(gram):
            break
        times = 1
        while keys[i + times * size : i + (times + 1) * size] == gram:
            times += 1
        numeric = all(part.replace(" ", "").isdigit() for part in gram)
        needed = min_repeats * (2 if numeric else 1)
        if times >= needed and size * times > best[0] * best[1]:
            best = (size, times)
    return best


def apply_replacements(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    """Case-insensitive whole-word replacements; spaces in a pattern also match "-" and ",".

    So ("ten four", "10-4") rewrites "Ten four.", "ten-four" and "ten, four".
    """
    for pattern, replacement in replacements:
        text = _replacement_regex(pattern).sub(lambda _m, r=replacement: r, text)
    return text


@functools.lru_cache(maxsize=256)
def _replacement_regex(pattern: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[\s\-]+", pattern.strip()) if w]
    return re.compile(r"(?<!\w)" + r"[\s,\-]+".join(words) + r"(?!\w)", re.IGNORECASE)


# --------------------------------------------------------------------------- language


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


# --------------------------------------------------------------------------- audio


def prepare_audio(samples: np.ndarray, options: RadioOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """High-pass, tone removal and loudness normalisation of 16 kHz mono float32 audio.

    Returns the conditioned copy and what was done (``gain_db``, ``tones``), which the
    engine stores with the result. Order matters: tones are removed before the level
    is measured, so a loud page tone does not decide the speech gain.
    """
    import numpy as np

    audio = np.array(samples, dtype=np.float32, copy=True)
    info: dict[str, Any] = {}
    if options.highpass_hz:
        audio = highpass(audio, options.highpass_hz)
        info["highpass_hz"] = options.highpass_hz
    if options.suppress_tones:
        audio, tones = suppress_tones(audio, min_seconds=options.tone_min_seconds, purity=options.tone_purity)
        info["tones"] = tones
    if options.normalize_loudness:
        audio, gain_db = normalize_level(audio, options.target_dbfs, options.max_gain_db)
        info["gain_db"] = round(gain_db, 2)
    return audio, info


def highpass(audio: np.ndarray, corner_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth-magnitude high-pass by FFT (no scipy, no phase shift)."""
    import numpy as np

    n = audio.shape[0]
    if n < 2:
        return audio
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    with np.errstate(divide="ignore"):
        ratio = np.where(freqs > 0, corner_hz / np.maximum(freqs, 1e-9), np.inf)
    spectrum *= 1.0 / np.sqrt(1.0 + ratio ** (2 * order))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def frame_levels_dbfs(audio: np.ndarray, frame_seconds: float = 0.02) -> np.ndarray:
    """Power of consecutive 20 ms frames in dBFS (-200 for digital silence)."""
    import numpy as np

    n = max(1, int(frame_seconds * SAMPLE_RATE))
    usable = audio.shape[0] // n * n
    frames = audio[:usable].reshape(-1, n) if usable else audio.reshape(1, -1)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(np.maximum(power, 1e-20))


def active_level_dbfs(audio: np.ndarray, range_db: float = 30.0) -> float:
    """Power level over the 20 ms frames within ``range_db`` of the loudest (a light P.56).

    Pauses and hiss between words would otherwise pull a plain RMS down and make
    sparse calls louder than dense ones. -inf for digital silence.
    """
    import numpy as np

    levels = frame_levels_dbfs(audio)
    if levels.size == 0 or levels.max() <= -120:
        return -math.inf
    active = levels[levels >= levels.max() - range_db]
    return float(10 * np.log10(np.mean(10 ** (active / 10))))


def normalize_level(audio: np.ndarray, target_dbfs: float, max_gain_db: float) -> tuple[np.ndarray, float]:
    """Scale to ``target_dbfs`` active level, boosting at most ``max_gain_db``, never clipping.

    A call is boosted only when its active level stands at least 6 dB above its
    noise floor (10th percentile frame): a steady hiss or carrier with nothing on
    top gains nothing from being louder, and the VAD scores loud noise higher.
    Attenuation is always allowed.
    """
    import numpy as np

    level = active_level_dbfs(audio)
    if not math.isfinite(level) or level < -90:
        return audio, 0.0
    gain_db = min(target_dbfs - level, max_gain_db)
    if gain_db > 0 and level - float(np.percentile(frame_levels_dbfs(audio), 10)) < _MIN_DYNAMICS_DB:
        gain_db = 0.0
    peak = float(np.max(np.abs(audio)))
    if peak > 0:
        gain_db = min(gain_db, 20 * math.log10(0.99 / peak))  # scale, never clip
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32), gain_db


_MIN_DYNAMICS_DB = 6.0  # active level above the noise floor before a boost is applied
_N_FFT, _HOP = 1024, 256  # tone analysis: 64 ms frames (15.6 Hz bins), 16 ms hop
_NOTCH_BINS = 4  # +-4 bins (62 Hz) around a tone peak: the Hann main lobe plus margin


def find_tones(audio: np.ndarray, *, min_seconds: float = 0.4, purity: float = 0.9) -> list[dict[str, Any]]:
    """Regions where one or two steady sinusoids carry the signal: pages, alert tones, DTMF.

    Per 64 ms frame (hop 16 ms), the share of 250-3500 Hz energy within +-2 FFT bins
    of the two strongest peaks ("purity") is close to 1 for tones and rarely above
    0.9 for speech, whose energy spreads over many harmonics that move with the
    pitch. A run of pure frames whose peak stays within one bin (15.6 Hz) for
    ``min_seconds`` is a tone; on the test speech such runs last at most ~0.2 s.
    Returns ``[{"start", "end", "hz": [peak frequencies]}]`` in seconds.
    """
    return _scan_tones(audio, min_seconds, purity)[0]


def suppress_tones(
    audio: np.ndarray, *, min_seconds: float = 0.4, purity: float = 0.9
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Notch the tones :func:`find_tones` reports out of the audio, leaving everything else.

    Only the tone's own bins (+-62 Hz) are removed, in the tone's frames, by STFT
    masking and overlap-add: the hiss around and under the tone stays, so the VAD
    sees an unbroken noise floor instead of a tone, or of a hole cut by muting
    (which the segmentation model scores as an onset), and speech talking over a
    tone keeps all its other frequencies.
    """
    import numpy as np

    tones, runs, peaks, spectrum = _scan_tones(audio, min_seconds, purity)
    if not tones:
        return audio, tones
    window = np.hanning(_N_FFT).astype(np.float32)
    bins = np.arange(-_NOTCH_BINS, _NOTCH_BINS + 1)
    out = audio.copy()
    for first, last in runs:
        frames = np.arange(first, last + 1)
        for p in range(peaks.shape[1]):
            cols = np.clip(peaks[frames, p][:, None] + bins[None, :], 0, spectrum.shape[1] - 1)
            spectrum[frames[:, None], cols] = 0.0
        lo, hi = first * _HOP, last * _HOP + _N_FFT
        # Overlap-add of every frame touching [lo, hi), normalised by the summed window^2.
        touch = np.arange(max(0, first - _N_FFT // _HOP + 1), min(len(spectrum), last + _N_FFT // _HOP))
        acc = np.zeros(hi - lo + 2 * _N_FFT, dtype=np.float64)
        norm = np.zeros_like(acc)
        base = touch[0] * _HOP
        for j in touch:
            at = j * _HOP - base
            acc[at : at + _N_FFT] += np.fft.irfft(spectrum[j], _N_FFT) * window
            norm[at : at + _N_FFT] += window**2
        seg = slice(lo - base, hi - base)
        out[lo:hi] = (acc[seg] / np.maximum(norm[seg], 1e-6)).astype(np.float32)
    return out, tones


def _scan_tones(
    audio: np.ndarray, min_seconds: float, purity: float
) -> tuple[list[dict[str, Any]], list[tuple[int, int]], np.ndarray, np.ndarray]:
    """(tones, frame runs, peak bins per frame, complex STFT) for find/suppress_tones."""
    import numpy as np

    if audio.shape[0] < _N_FFT:
        return [], [], np.zeros((0, 2), dtype=int), np.zeros((0, _N_FFT // 2 + 1), dtype=np.complex64)
    frames = np.lib.stride_tricks.sliding_window_view(audio, _N_FFT)[::_HOP]
    spectrum = np.fft.rfft(frames * np.hanning(_N_FFT).astype(np.float32), axis=1)
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
    power = np.abs(spectrum) ** 2
    power[:, (freqs < 250.0) | (freqs > 3500.0)] = 0.0  # where radio tones live
    total = power.sum(axis=1) + 1e-20
    share, peaks = _two_peak_share(power)
    loud = 10 * np.log10(total / _N_FFT) > -70.0  # ignore near-digital silence
    pure = (share / total >= purity) & loud
    min_frames = max(1, math.ceil(min_seconds * SAMPLE_RATE / _HOP))
    runs = _stable_runs(pure, peaks, min_frames)
    tones = [
        {
            "start": round(first * _HOP / SAMPLE_RATE, 3),
            "end": round((last * _HOP + _N_FFT) / SAMPLE_RATE, 3),
            "hz": _tone_frequencies(freqs[peaks[first : last + 1, 0]]),
        }
        for first, last in runs
    ]
    return tones, runs, peaks, spectrum


def _tone_frequencies(peak_hz: np.ndarray) -> list[float]:
    """Distinct main-peak frequencies of a run (a two-tone page has two), rounded to 10 Hz."""
    import numpy as np

    values, counts = np.unique(np.round(peak_hz / 10) * 10, return_counts=True)
    keep = values[counts >= max(2, 0.1 * len(peak_hz))]
    return [float(v) for v in keep] or [float(np.median(peak_hz))]


def _two_peak_share(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy within +-2 bins of the strongest and second strongest peak, and their bins."""
    import numpy as np

    work = power.copy()
    rows = np.arange(work.shape[0])[:, None]
    share = np.zeros(work.shape[0])
    peaks = np.zeros((work.shape[0], 2), dtype=int)
    for p in range(2):
        k = work.argmax(axis=1)
        cols = np.clip(k[:, None] + np.arange(-2, 3)[None, :], 0, work.shape[1] - 1)
        share += _lobe_energy(work, rows, cols)
        work[rows, cols] = 0.0
        peaks[:, p] = k
    return share, peaks


def _lobe_energy(work: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sum of distinct bins in each row's window (clipping at the edges may repeat a bin)."""
    import numpy as np

    picked = work[rows, cols]
    dup = np.zeros_like(picked, dtype=bool)
    dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
    return np.where(dup, 0.0, picked).sum(axis=1)


def _stable_runs(pure: np.ndarray, peaks: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """(first, last) frame of each run of pure frames whose peak bins stay put (+-1 bin)."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for j in range(len(pure)):
        steady = (
            start is not None and pure[j] and min(abs(int(peaks[j, 0]) - int(p)) for p in peaks[j - 1]) <= 1
        )
        if steady:
            continue
        if start is not None and j - start >= min_frames:
            runs.append((start, j - 1))
        start = j if pure[j] else None
    if start is not None and len(pure) - start >= min_frames:
        runs.append((start, len(pure) - 1))
    return runs
