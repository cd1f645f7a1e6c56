"""The one place the engine reads a library's private or version-bound internals.

whisperx, faster-whisper and torchaudio are pinned; raising a pin should be a one-file change.
Every symbol the engine needs that a library does not document lives here, behind a function
that names it, and ``tests/test_asr_compat.py`` exercises each against the installed versions
and fails naming the symbol when an upgrade moves it.

Public APIs replaced private ones where they give identical results (checked on faster-whisper
1.2.1 / whisperx 3.8.6):

* model sizes: ``faster_whisper.utils.available_models()`` instead of ``utils._MODELS`` (it
  returns that dict's keys, same order);
* language codes: ``whisperx.utils.LANGUAGES`` instead of ``faster_whisper.tokenizer.
  _LANGUAGE_CODES`` (the same 100 codes; the test checks faster-whisper's tokenizer accepts
  each one).

Private reads that stay, because no public API does the same:

* ``FasterWhisperPipeline._vad_params`` (whisperx): the plain pipeline reads the VAD onset and
  offset from it on every ``transcribe``; ``load_model`` takes them only at load, and reloading
  a model to change two thresholds costs seconds and memory.
* ``Wav2Vec2Bundle._path`` (torchaudio): the checkpoint's file name, to check the torch hub
  cache before loading. The public ``bundle.get_model()`` downloads on a miss, which an offline
  worker must not attempt.

Two more stay outside this file on purpose: kombu's ``channel._q_for_pri`` in
``rdio_tasks/broker_compat.py`` (the broker, not the engine), and ``Wav2Vec2Bundle._params`` in
``tests/test_engine.py``, reached through :func:`torchaudio_bundle_params` here.
"""

from __future__ import annotations

import functools
import os
from typing import Any

__all__ = [
    "LibraryCompatError",
    "known_model_sizes",
    "language_codes",
    "set_vad_thresholds",
    "torchaudio_bundle_filename",
    "torchaudio_bundle_params",
]

VAD_PARAMS = "whisperx.asr.FasterWhisperPipeline._vad_params"
BUNDLE_PATH = "torchaudio.pipelines.Wav2Vec2Bundle._path"
BUNDLE_PARAMS = "torchaudio.pipelines.Wav2Vec2Bundle._params"


class LibraryCompatError(RuntimeError):
    """An installed library no longer has an internal this module relies on (named in the message)."""

    def __init__(self, symbol: str, found: Any) -> None:
        super().__init__(
            f"{symbol} is missing or changed shape (found {type(found).__name__}); "
            f"update rdio_tasks/asr/compat.py for the installed version"
        )
        self.symbol = symbol


def known_model_sizes() -> list[str]:
    """Model names faster-whisper maps to a hub repo ("tiny.en", "large-v3", ...)."""
    from faster_whisper.utils import available_models

    return list(available_models())


@functools.cache
def language_codes() -> frozenset[str]:
    """Language codes Whisper's tokenizer knows ("en", "es", "yue", ...)."""
    from whisperx.utils import LANGUAGES

    return frozenset(LANGUAGES)


def set_vad_thresholds(pipeline: Any, onset: float, offset: float) -> None:
    """Change the VAD onset/offset a loaded whisperx pipeline uses on its next ``transcribe``."""
    params = getattr(pipeline, "_vad_params", None)
    if not isinstance(params, dict):
        raise LibraryCompatError(VAD_PARAMS, params)
    params.update(vad_onset=onset, vad_offset=offset)


def torchaudio_bundle_filename(bundle: Any) -> str:
    """File name of a torchaudio wav2vec2 bundle's checkpoint in the torch hub cache, or ""."""
    return os.path.basename(getattr(bundle, "_path", "") or "")


def torchaudio_bundle_params(bundle: Any) -> dict[str, Any]:
    """The ``wav2vec2_model`` keyword arguments of a torchaudio bundle (tests build a stand-in)."""
    params = getattr(bundle, "_params", None)
    if not isinstance(params, dict):
        raise LibraryCompatError(BUNDLE_PARAMS, params)
    return params
