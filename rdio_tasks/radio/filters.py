"""Text filters applied to the decoder's raw segments: the hallucination control of the radio pipeline.

Pure Python, no model: :func:`clean` works on segment dicts (text, start, end, avg_logprob,
no_speech_prob), so every step is unit-tested in ``tests/test_radio.py``. Every removal is
recorded with its reason, so a user can see what was cut and why.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rdio_core.text_normalize import normalize_words
from rdio_tasks.radio.glossary import correct_near_misses
from rdio_tasks.radio.numbers import numbers_to_digits
from rdio_tasks.radio.options import RadioOptions
from rdio_tasks.radio.phrases import PhraseList, load_phrases, phrase_tokens

__all__ = ["CleanResult", "apply_replacements", "clean", "collapse_repetitions"]

# Removal reasons (the "reason" of each entry in CleanResult.removed).
NO_SPEECH = "no_speech"
LOW_LOGPROB = "low_logprob"
REPETITION = "repetition"
PROMPT_ECHO = "prompt_echo"
PHRASE = "hallucination_phrase"
EMPTY = "empty"


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


def clean(
    raw_segments: Sequence[Mapping[str, Any]],
    options: RadioOptions | None = None,
    *,
    prompt: str | None = None,
    glossary: Sequence[str] = (),
) -> CleanResult:
    """Apply the hallucination filters to decoded segments, in this order.

    1. No segments at all (the VAD found no speech): ``no_speech``.
    2. Confidence gates: Whisper's no-speech rule, then a log-probability floor.
    3. Runaway repetition is collapsed to one occurrence (the segment stays).
    4. With a prompt: a segment that only repeats the prompt is dropped.
    5. A segment made only of hallucination phrases is dropped ("always" phrases
       unconditionally, ambiguous ones unless the segment is confident); then the
       same test on the whole remaining transcript, for phrases split across segments.
    6. Rewrites of what is left: word replacements, radio numbers as digits, then near-misses of
       ``glossary`` terms.

    The input is not modified; kept segments are copies with an updated ``text``.
    """
    options = options or RadioOptions()
    phrases = load_phrases(options) if options.filter_phrases else PhraseList()
    result = CleanResult(text="", segments=[], steps=_steps(options, prompt, phrases, glossary))
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
        seg["text"] = rewrite(seg["text"], options, glossary)
    result.segments = [seg for _, seg in kept if seg["text"]]
    result.text = " ".join(seg["text"] for seg in result.segments).strip()
    result.no_speech = not result.text
    result.removed.sort(key=lambda r: r["segment"])
    return result


def rewrite(text: str, options: RadioOptions, glossary: Sequence[str] = ()) -> str:
    """Replacements, then numbers as digits, then glossary near-misses (digits first, so that
    "Medic twelve" can meet the term "Medic 12")."""
    text = apply_replacements(text, options.replacements)
    if options.digits:
        text = numbers_to_digits(text)
    if options.glossary_correct and glossary:
        text, _ = correct_near_misses(text, glossary, options.glossary_min_similarity)
    return text


def _steps(
    options: RadioOptions, prompt: str | None, phrases: PhraseList, glossary: Sequence[str]
) -> list[str]:
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
    if options.digits:
        steps.append("digits")
    if options.glossary_correct and glossary:
        steps.append("glossary")
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
    """The speech decision (``options.speech_decision``); missing scores never drop a segment."""
    nsp = _score(seg, "no_speech_prob")
    lp = _score(seg, "avg_logprob")
    vad = _score(seg, "vad_score")
    if options.speech_decision == "evidence" and vad is not None:
        return _evidence_gate(nsp, lp, vad, options)
    if options.drop_no_speech and nsp is not None and nsp >= options.no_speech_threshold:
        floor = options.no_speech_logprob_threshold
        if floor is None or lp is None or lp < floor:
            return NO_SPEECH, f"no_speech_prob {nsp:.2f} >= {options.no_speech_threshold}{_scores(seg)}"
    if options.drop_low_logprob and lp is not None and lp < options.min_avg_logprob:
        return LOW_LOGPROB, f"avg_logprob {lp:.2f} < {options.min_avg_logprob}"
    return None


def _evidence_gate(
    nsp: float | None, lp: float | None, vad: float, options: RadioOptions
) -> tuple[str, str] | None:
    """Two of three votes for silence drop a segment: the no-speech head, the log-prob, the VAD."""
    votes: list[tuple[str, str]] = []
    if options.drop_no_speech and nsp is not None and nsp >= options.no_speech_threshold:
        votes.append((NO_SPEECH, f"no_speech_prob {nsp:.2f} >= {options.no_speech_threshold}"))
    floor = options.no_speech_logprob_threshold
    if floor is None:
        floor = options.min_avg_logprob
    if options.drop_low_logprob and lp is not None and lp < floor:
        votes.append((LOW_LOGPROB, f"avg_logprob {lp:.2f} < {floor}"))
    if vad < options.vad_speech_score:
        votes.append(("vad", f"vad_score {vad:.2f} < {options.vad_speech_score}"))
    if len(votes) < 2:
        return None
    reason = votes[0][0] if votes[0][0] != "vad" else votes[1][0]
    return reason, "; ".join(detail for _, detail in votes)


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
        # A function, not a template: backslashes in a replacement stay as typed.
        text = _replacement_regex(pattern).sub(_literal(replacement), text)
    return text


def _literal(replacement: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: replacement


@functools.lru_cache(maxsize=256)
def _replacement_regex(pattern: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[\s\-]+", pattern.strip()) if w]
    return re.compile(r"(?<!\w)" + r"[\s,\-]+".join(words) + r"(?!\w)", re.IGNORECASE)
