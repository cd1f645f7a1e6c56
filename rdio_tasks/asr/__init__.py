"""Speech recognition for the Celery worker: WhisperX with a radio pipeline, split by concern.

Importing this package loads no torch, whisperx, ctranslate2, faster_whisper or numpy (the API
process and the Celery parent import it); see :mod:`rdio_tasks.asr.engine` for why, and its
docstring for which module holds which step.
"""

from __future__ import annotations

from rdio_tasks.asr.cache import clear_engines, get_engine
from rdio_tasks.asr.config import SAMPLE_RATE, EngineConfig
from rdio_tasks.asr.engine import WhisperXEngine
from rdio_tasks.asr.models import resolve_model
from rdio_tasks.asr.result import TranscriptionResult
from rdio_tasks.radio import RadioOptions

__all__ = [
    "SAMPLE_RATE",
    "EngineConfig",
    "RadioOptions",
    "TranscriptionResult",
    "WhisperXEngine",
    "clear_engines",
    "get_engine",
    "resolve_model",
]
