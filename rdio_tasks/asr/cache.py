"""The process-wide engine cache: one loaded model per worker process, LRU beyond that.

A Whisper model is hundreds of MB to GBs of (GPU) memory and loading it takes seconds, so every
task in a worker process shares one engine; a config that differs only in per-call options
reuses it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from rdio_tasks.asr.config import EngineConfig
from rdio_tasks.asr.engine import WhisperXEngine
from rdio_tasks.asr.runtime import resolve_runtime

__all__ = ["clear_engines", "get_engine"]

logger = logging.getLogger(__name__)

_engines: OrderedDict[tuple[str, str, str, int, str, int, int], WhisperXEngine] = OrderedDict()
_engines_lock = threading.Lock()


def get_engine(config: EngineConfig | None = None, *, max_models: int = 1) -> WhisperXEngine:
    """The process-wide engine for ``config``, loading it on first use.

    Engines are keyed by (resolved model, device, compute type, CPU threads); a
    config that differs only in per-call options reuses the loaded engine and
    updates those options (last caller wins). At most ``max_models`` engines stay
    loaded; the least recently used one is closed *before* the new one loads, so
    peak memory never holds more than ``max_models`` models.
    """
    if max_models < 1:
        raise ValueError("max_models must be >= 1")
    config = config or EngineConfig()
    runtime = resolve_runtime(config)
    # The model's layout (workers, threads) is set at load: another layout is another engine.
    key = (
        runtime.model_path,
        runtime.device,
        runtime.compute_type,
        runtime.cpu_threads,
        config.encoder,
        runtime.model_workers,
        runtime.model_threads,
    )
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            if engine.config != config:
                engine.reconfigure(config)
            return engine
        while len(_engines) >= max_models:
            old_key, old = _engines.popitem(last=False)
            logger.info("evicting whisper model %s (%s/%s)", old.config.model, old_key[1], old_key[2])
            old.close()
            del old
        engine = WhisperXEngine(config, runtime)
        _engines[key] = engine
        return engine


def clear_engines() -> None:
    """Close every cached engine (worker shutdown, tests)."""
    with _engines_lock:
        while _engines:
            _, engine = _engines.popitem()
            engine.close()
