"""Language: validate a requested code, or detect it from audio while keeping the probability.

whisperx detects the language too, but only logs the probability; the result stores it, and the
radio pipeline needs it to decide whether to trust a detection on a few seconds of speech.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rdio_tasks.asr import compat
from rdio_tasks.errors import PermanentError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["detect_encoded", "detect_language", "fixed_language"]

logger = logging.getLogger(__name__)


def fixed_language(
    language: str | None, *, multilingual: bool, default: str | None, model_name: str
) -> str | None:
    """Language to decode with, if known without detection (``None``: detect).

    English-only checkpoints always decode English; a multilingual one uses ``language``,
    else ``default``. Raises :class:`PermanentError` for a code Whisper does not know.
    """
    if language is not None:
        language = language.strip().lower() or None
    if not multilingual:
        if language not in (None, "en"):
            logger.warning("model %s is English-only; ignoring language=%r", model_name, language)
        return "en"
    language = language or default
    if language is None:
        return None
    language = language.strip().lower()  # the config default may be mixed case too
    if language not in compat.language_codes():
        raise PermanentError(f"unsupported language code {language!r}")
    return language


def detect_language(model: Any, audio: np.ndarray) -> tuple[str, float]:
    """Detect like whisperx (first 30 s of ``audio``) but keep the probability whisperx only logs."""
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    n_mels = model.feat_kwargs.get("feature_size") or 80
    segment = log_mel_spectrogram(
        audio[:N_SAMPLES], n_mels=n_mels, padding=max(0, N_SAMPLES - audio.shape[0])
    )
    return detect_encoded(model, model.encode(segment))


def detect_encoded(model: Any, encoder_output: Any) -> tuple[str, float]:
    """The most probable language of one encoded window, and its probability."""
    token, probability = model.model.detect_language(encoder_output)[0][0]
    return token[2:-2], float(probability)
