"""Decoding the radio pipeline's windows with CTranslate2, keeping ``no_speech_prob``.

whisperx's batched ``generate_segment_batched`` does not ask ctranslate2 for the no-speech
probability, and its temperature/threshold options are ignored. Rather than override that
method (private to whisperx, and rewritten between releases), this module calls the public,
documented ``ctranslate2.models.Whisper.generate`` on the same encoder output with
``return_no_speech_prob=True``: the probability of Whisper's ``<|nospeech|>`` token at the first
decoding step, exactly what OpenAI's and faster-whisper's sequential decoders use for their
silence rule. The prompt, features and log-prob formula are the ones whisperx uses, so with the
same audio the text equals the plain pipeline's (``tests/test_engine.py`` checks it).

faster-whisper's public ``WhisperModel.generate_with_fallback`` (1.2.1) is not used for the
temperature fallback: it decodes one window per call (the first, beam-search pass could not ride
in a cross-call batch) and also falls back on a low log-prob, which would change the transcripts.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rdio_tasks.radio import RadioOptions

__all__ = [
    "Encode",
    "Window",
    "WindowDecode",
    "compression_ratio",
    "encode_windows",
    "fallback",
    "generate",
    "make_tokenizer",
    "prompt_ids",
    "to_segments",
    "too_repetitive",
]

WindowDecode = tuple[str, float, float, float]
"""One window's decode: (text, avg_logprob, no_speech_prob, temperature)."""
Retry = Callable[[Any, tuple[str, float, float]], tuple[str, float, float]]


Encode = Callable[[list[Any]], Any]
"""Stacked log-mel windows -> encoder output that ``ctranslate2.models.Whisper.generate`` takes."""


@dataclass(frozen=True)
class Window:
    """One window for the model pass: its log-mel features and, when language detection already ran
    the encoder on it (asr/engine.py), that encoder output, so the pass does not encode it again."""

    features: Any
    encoded: Any = None


def encode_windows(model: Any, windows: Sequence[Window], encode: Encode | None = None) -> Any:
    """The encoder output of ``windows`` as one batch, encoding only those not encoded yet.

    Windows that arrive encoded are CPU StorageViews (the engine shares them only on the CPU), so the
    batch is put together in NumPy; on a CPU that costs ~1 ms against ~480 ms to encode a window
    with base (2 cores)."""
    import numpy as np

    todo = [w.features for w in windows if w.encoded is None]
    fresh = None
    if todo:
        fresh = encode(todo) if encode else model.encode(np.stack([np.asarray(f) for f in todo]))
        if len(todo) == len(windows):
            return fresh
    import ctranslate2

    fresh_rows = iter(np.asarray(fresh)) if fresh is not None else iter(())
    rows = [np.asarray(w.encoded)[0] if w.encoded is not None else next(fresh_rows) for w in windows]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(rows)))


def compression_ratio(text: str) -> float:
    """zlib ratio, as in Whisper: above ~2.4 the text is a repetition loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def too_repetitive(text: str, options: RadioOptions) -> bool:
    threshold = options.compression_ratio_threshold
    return threshold is not None and compression_ratio(text) > threshold


def text_and_logprob(result: Any, index: int, tokenizer: Any) -> tuple[str, float]:
    """Text and mean token log-prob of hypothesis ``index``, as whisperx/faster-whisper compute it."""
    tokens = result.sequences_ids[index]
    length = len(tokens)
    logprob = result.scores[index] * length / (length + 1)  # length_penalty 1: score is sum/len
    text = tokenizer.decode([t for t in tokens if t < tokenizer.eot]).strip()
    return text, float(logprob)


def make_tokenizer(model: Any, language: str) -> Any:
    """faster-whisper's tokenizer for transcribing ``language`` with ``model``."""
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)


def prompt_ids(model: Any, tokenizer: Any, prompt: str | None) -> list[int]:
    """The decoder prompt whisperx builds: start tokens, optional previous text, no timestamps."""
    previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
    return model.get_prompt(tokenizer, previous, without_timestamps=True)


def max_length(model: Any, prompt: Sequence[int], max_new_tokens: int | None) -> int:
    """ctranslate2's ``max_length`` counts the prompt too (as faster-whisper's ``max_new_tokens``)."""
    if max_new_tokens is None:
        return int(model.max_length)
    return min(int(model.max_length), len(prompt) + max_new_tokens)


def generate(
    model: Any,
    windows: Sequence[Window],
    prompt: list[int],
    tokenizer: Any,
    beam_size: int,
    suppress_blank: bool,
    max_new_tokens: int | None = None,
    encode: Encode | None = None,
) -> list[WindowDecode]:
    """Beam search at temperature 0 for a batch: (text, avg_logprob, no_speech_prob, 0.0).

    ``encode`` replaces CTranslate2's encoder (asr/torch_encoder.py); the decoder is CTranslate2's."""
    results = model.model.generate(
        encode_windows(model, windows, encode),
        [prompt] * len(windows),
        beam_size=beam_size,
        patience=1,
        length_penalty=1,
        max_length=max_length(model, prompt, max_new_tokens),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=suppress_blank,
        suppress_tokens=[-1],
    )
    return [(*text_and_logprob(r, 0, tokenizer), float(r.no_speech_prob), 0.0) for r in results]


def fallback(
    model: Any,
    feature: Any,
    prompt: list[int],
    tokenizer: Any,
    options: RadioOptions,
    first: tuple[str, float, float],
    encode: Encode | None = None,
) -> tuple[str, float, float]:
    """Whisper's temperature fallback for a repetition loop: sample at rising temperatures.

    Returns the first decode under the compression threshold, else the most
    probable of all, ``first`` (the beam-search result) included, as
    faster-whisper does. Sampling is not reproducible.
    """
    import numpy as np

    encoded = encode([feature]) if encode else model.encode(np.asarray(feature))
    tried: list[tuple[str, float, float]] = [first]
    for temperature in options.temperatures[1:]:
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            num_hypotheses=5,
            sampling_topk=0,
            sampling_temperature=temperature,
            length_penalty=1,
            max_length=max_length(model, prompt, options.max_new_tokens),
            return_scores=True,
            suppress_blank=options.suppress_blank,
            suppress_tokens=[-1],
        )[0]
        text, logprob = text_and_logprob(result, 0, tokenizer)
        if not too_repetitive(text, options):
            return text, logprob, temperature
        tried.append((text, logprob, temperature))
    return max(tried, key=lambda t: t[1])


def to_segments(
    chunks: Sequence[dict[str, float]],
    features: Sequence[Any],
    decoded: Sequence[WindowDecode],
    options: RadioOptions,
    retry: Retry,
) -> list[dict[str, Any]]:
    """Raw segments (speech bounds, scores) from each window's decode; loops go to ``retry``."""
    segments: list[dict[str, Any]] = []
    for chunk, feature, (text, logprob, no_speech, temperature) in zip(
        chunks, features, decoded, strict=True
    ):
        if len(options.temperatures) > 1 and too_repetitive(text, options):
            text, logprob, temperature = retry(feature, (text, logprob, temperature))
        segments.append(
            {
                "text": text,
                "start": round(chunk["start"], 3),
                "end": round(chunk["end"], 3),
                "avg_logprob": logprob,
                "no_speech_prob": no_speech,
                "compression_ratio": round(compression_ratio(text), 3),
                "temperature": temperature,
            }
        )
        if "vad_score" in chunk:
            segments[-1]["vad_score"] = chunk["vad_score"]
    return segments
