"""Importing whisperx quietly and loading its pipeline: the only module that calls ``load_model``.

whisperx's import (~3 s: transformers, pyannote, lightning) installs its own stdout log handler,
prints a Lightning checkpoint-upgrade notice on every VAD load, warns about torchcodec, and
pyannote.audio 4 switches usage telemetry on; each is undone here, once, before the first load.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from rdio_tasks.asr.config import EngineConfig
from rdio_tasks.asr.models import hub_offline
from rdio_tasks.asr.runtime import Runtime
from rdio_tasks.errors import ModelNotFoundError

__all__ = ["import_whisperx_asr", "load_pipeline"]


def route_whisperx_logging() -> None:
    """Send whisperx logs through the host's logging config instead of whisperx's own.

    ``whisperx.log_utils.get_logger`` installs a stdout handler at INFO with
    ``propagate=False`` whenever the ``whisperx`` logger has no handler, which
    bypasses Celery's log formatting. A NullHandler makes it skip that setup.
    The Lightning "automatically upgraded your checkpoint" INFO line, emitted on
    every VAD load, suggests editing site-packages; it is silenced.
    """
    wx_logger = logging.getLogger("whisperx")
    if not wx_logger.handlers:
        wx_logger.addHandler(logging.NullHandler())
    wx_logger.propagate = True
    for name in (
        "lightning.pytorch.utilities.migration.utils",
        "pytorch_lightning.utilities.migration.utils",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def import_whisperx_asr() -> Any:
    """Import whisperx.asr (~3 s: transformers, pyannote, lightning) quietly and privately.

    pyannote warns at import that torchcodec cannot load FFmpeg; that only matters
    for pyannote decoding files itself, and we always hand it in-memory waveforms.
    """
    route_whisperx_logging()
    # pyannote.audio 4 ships OpenTelemetry usage metrics switched on: every VAD model
    # load and every VAD run sends a span to otel.pyannote.ai. A radio archive must not
    # phone home (nor resolve DNS per call); operators can still opt in explicitly.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torchcodec is not installed correctly")
        import whisperx.asr

    return whisperx.asr


def load_pipeline(asr: Any, config: EngineConfig, runtime: Runtime) -> Any:
    """``whisperx.asr.load_model`` with the pyannote VAD, offline when the hub is, errors classified.

    Raises:
        ModelNotFoundError: the hub says the model id or revision does not exist.
    """
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        compute_type = runtime.compute_type
        if compute_type == "default":  # what load_model would have passed on
            compute_type = "float16" if runtime.device == "cuda" else "float32"
        # Built here for num_workers, which load_model does not pass on (runtime.model_parallelism).
        model = asr.WhisperModel(
            runtime.model_path,
            device=runtime.device,
            compute_type=compute_type,
            download_root=str(config.models_dir) if config.models_dir else None,
            local_files_only=hub_offline(),
            cpu_threads=runtime.model_threads,
            num_workers=runtime.model_workers,
        )
        # Given the model, load_model reads only the name (English-only or not), the device (the
        # VAD's), the language and the VAD options.
        return asr.load_model(
            runtime.model_path,
            runtime.device,
            language=config.language,
            vad_method="pyannote",  # weights ship in the wheel (whisperx/assets/pytorch_model.bin)
            vad_options={"vad_onset": config.vad_onset, "vad_offset": config.vad_offset},
            model=model,
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        # Only reachable online with a hub id that does not exist: permanent.
        # (Network failures surface as LocalEntryNotFoundError and stay retryable.)
        raise ModelNotFoundError(f"Whisper model {config.model!r} not found on the hub: {exc}") from exc
