"""What a worker asks the engine for: :class:`EngineConfig`, validated when the worker starts.

Separate from the engine so the settings layer and the Celery task module can build and compare
configs without importing anything that loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdio_tasks.radio import RadioOptions

__all__ = ["DEVICES", "SAMPLE_RATE", "EngineConfig", "radio_options"]

SAMPLE_RATE = 16000  # whisperx.audio.SAMPLE_RATE; duplicated to avoid importing whisperx
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EngineConfig:
    """Worker transcription settings.

    ``model``, ``device``, ``compute_type``, ``models_dir`` and ``cpu_threads``
    decide what gets loaded; the remaining fields are per-call options that can
    change without reloading the model.

    ``radio`` selects the pipeline: :class:`RadioOptions` (the default) runs the
    radio pipeline (audio conditioning, no-speech gating, hallucination filters);
    ``None`` (or ``False``) runs plain WhisperX with its default options. ``True``
    and a mapping of option values (plus an optional ``enabled`` flag) are
    accepted too, for settings files.
    """

    model: str = "tiny.en"
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto: float16 on cuda, int8 on cpu
    models_dir: Path | None = None
    batch_size: int = 8
    language: str | None = None  # default language; None = detect (multilingual models)
    vad_onset: float = 0.5
    vad_offset: float = 0.363
    align: bool = True
    cpu_threads: int = 0  # 0 = every CPU this process may use
    radio: RadioOptions | None = field(default_factory=RadioOptions)
    # Cross-call batching (radio pipeline): chunks of concurrent calls share model passes of up to
    # ``batch_size``; the inference thread waits at most ``max_batch_wait_ms`` for a batch to fill.
    cross_call_batching: bool = True
    max_batch_wait_ms: float = 30.0

    def __post_init__(self) -> None:
        """Reject bad settings at worker start-up rather than on the first call."""
        if self.models_dir is not None and not isinstance(self.models_dir, Path):
            object.__setattr__(self, "models_dir", Path(self.models_dir))  # settings may pass str
        object.__setattr__(self, "radio", radio_options(self.radio))
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not (0 < self.vad_onset < 1 and 0 < self.vad_offset < 1):
            raise ValueError("vad_onset and vad_offset must be between 0 and 1")
        if self.cpu_threads < 0:
            raise ValueError("cpu_threads must be >= 0")
        if self.max_batch_wait_ms < 0:
            raise ValueError("max_batch_wait_ms must be >= 0")


def radio_options(value: Any) -> RadioOptions | None:
    """Normalise the ``radio`` setting: options, None/False (plain), True or a mapping."""
    if value is None or value is False:
        return None
    if value is True:
        return RadioOptions()
    if isinstance(value, RadioOptions):
        return value
    if isinstance(value, dict):  # settings: {"enabled": bool, <RadioOptions fields>...}
        values = dict(value)
        if not values.pop("enabled", True):
            return None
        return RadioOptions.from_mapping(values)
    raise ValueError(f"radio must be RadioOptions, a mapping, True, False or None; got {value!r}")
