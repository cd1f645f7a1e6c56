"""What a worker asks the engine for: :class:`EngineConfig`, validated when the worker starts.

Separate from the engine so the settings layer and the Celery task module can build and compare
configs without importing anything that loads a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdio_tasks.radio import RadioOptions

if TYPE_CHECKING:
    from rdio_core.settings import TranscriptionSettings

__all__ = [
    "DEVICES",
    "ENCODERS",
    "ONE_CALL_WINDOWS",
    "SAMPLE_RATE",
    "EngineConfig",
    "batch_size_for",
    "radio_options",
]

SAMPLE_RATE = 16000  # whisperx.audio.SAMPLE_RATE; duplicated to avoid importing whisperx
DEVICES = ("auto", "cpu", "cuda")
ENCODERS = ("auto", "ctranslate2", "torch")


@dataclass(frozen=True)
class EngineConfig:
    """Worker transcription settings.

    ``model``, ``device``, ``compute_type``, ``models_dir`` and ``cpu_threads``
    decide what gets loaded; the remaining fields are per-call options that can
    change without reloading the model.

    ``radio`` selects the pipeline: :class:`RadioOptions` (the default) runs the
    radio pipeline (audio conditioning, no-speech gating, hallucination filters);
    ``None`` (or ``False``, or options with ``enabled=False``) runs plain WhisperX
    with its default options. ``True`` and a mapping of option values are accepted
    too (a mapping is validated like the settings file).

    A worker builds it with :meth:`from_settings`, the one place that maps settings to it.
    """

    model: str = "base"  # the settings default; tests and benches pin tiny.en where speed matters
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto: float16 on cuda, int8 on cpu
    models_dir: Path | None = None
    # Chunks per model pass; None: what the calls in flight fill (batch_size_for).
    batch_size: int | None = None
    concurrency: int = 8  # calls in flight in this worker process (the settings default)
    language: str | None = None  # default language; None = detect (multilingual models)
    vad_onset: float = 0.5
    vad_offset: float = 0.363
    align: bool = True
    # CTranslate2's threads. 0 = every CPU this process may use: on the CPU as one model worker per
    # core on one thread each (runtime.model_parallelism), elsewhere as one worker's threads.
    cpu_threads: int = 0
    # Who runs the audio encoder: CTranslate2, or PyTorch on the same weights (flash attention; see
    # asr/torch_encoder.py). auto = torch on CUDA, CTranslate2 on the CPU (int8 is faster there).
    encoder: str = "auto"
    radio: RadioOptions | None = field(default_factory=RadioOptions)
    # Cross-call batching (radio pipeline): chunks of concurrent calls share model passes of up to
    # ``batch_size``; the inference thread waits at most ``max_batch_wait_ms`` for a batch to fill.
    cross_call_batching: bool = True
    max_batch_wait_ms: float = 30.0
    # While calls are still being prepared (conditioning, VAD, language), a batch that is not full
    # waits for them up to this long (rdio_tasks/batcher.py).
    max_prepare_wait_ms: float = 0.0
    # Processes that condition, VAD and featurise radio calls (asr/prepare.py); 0: in the call's
    # thread. Off by default until measured on a GPU (bench/gpu/run.sh prepare).
    prepare_processes: int = 0

    def __post_init__(self) -> None:
        """Reject bad settings at worker start-up rather than on the first call."""
        if self.models_dir is not None and not isinstance(self.models_dir, Path):
            object.__setattr__(self, "models_dir", Path(self.models_dir))  # settings may pass str
        object.__setattr__(self, "radio", radio_options(self.radio))
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1 (or None: sized by concurrency)")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not (0 < self.vad_onset < 1 and 0 < self.vad_offset < 1):
            raise ValueError("vad_onset and vad_offset must be between 0 and 1")
        if self.cpu_threads < 0:
            raise ValueError("cpu_threads must be >= 0")
        if self.max_batch_wait_ms < 0:
            raise ValueError("max_batch_wait_ms must be >= 0")
        if self.max_prepare_wait_ms < 0:
            raise ValueError("max_prepare_wait_ms must be >= 0")
        if not isinstance(self.prepare_processes, int) or self.prepare_processes < 0:
            raise ValueError(f"prepare_processes must be an integer >= 0, got {self.prepare_processes!r}")

    @classmethod
    def from_settings(
        cls,
        tx: TranscriptionSettings,
        model: str | None = None,
        language: str | None = None,
        concurrency: int | None = None,
    ) -> EngineConfig:
        """The worker's config from ``transcription`` settings: every field named like a setting
        takes the setting's value (a new one flows through without a second list to update);
        ``model``/``language`` override the global ones for one call (a job's or a talkgroup's
        choice), ``concurrency`` the setting when the worker runs another count (``-c``). Cross-call
        batching follows ``batch_size``: one chunk per pass has nothing to share.
        """
        values = {f.name: getattr(tx, f.name) for f in fields(cls) if f.name in type(tx).model_fields}
        values.update(
            model=model or tx.model, language=language or tx.language, cross_call_batching=tx.batch_size != 1
        )
        if concurrency is not None:
            values["concurrency"] = concurrency
        return cls(**values)


#: Windows of one call decoded per pass where no cross-call batcher runs (plain mode, batching off)
#: and no batch size is set: a call's windows are all ready at once, so no calls in flight are needed
#: to fill the pass. The default batch size before it was sized by the calls in flight.
ONE_CALL_WINDOWS = 4


def batch_size_for(config: EngineConfig, inference_threads: int) -> int:
    """``config.batch_size``, else the largest batch the calls in flight fill: ``concurrency`` /
    (2 x ``inference_threads``), at least 1.

    A pass holds about half the calls in flight per inference thread: the calls of the pass under
    way are not preparing their next chunk (bench/throughput.py). A batch sized for more runs half
    empty. On 2 CPU cores (two inference threads, 8 calls in flight) this gives 2. In
    ``bench/throughput.py --calls 96`` (AMD EPYC, tiny.en) batches of 2 were 96% full at 2.70 /
    2.84 calls/s; batches of 4 were 53-54% full at 2.71 / 2.70 calls/s and held 200-270 MB more.
    A GPU (one inference thread) gets 4 with 8 in flight, 32 with ``concurrency: 64``; 3 CPU cores
    or more with 8 in flight get 1: each pass one chunk, the most urgent first, the passes side by
    side on the model workers.
    """
    if config.batch_size is not None:
        return config.batch_size
    return max(1, config.concurrency // (2 * max(1, inference_threads)))


def radio_options(value: Any) -> RadioOptions | None:
    """Normalise a ``radio`` value: options, None/False (plain), True or a mapping of options.

    Options switched off (``enabled=False``) become None, so "plain" has one spelling inside.

    Raises:
        ValueError: anything else, or a mapping with an unknown key or an impossible value.
    """
    if value is None or value is False:
        return None
    if value is True:
        return RadioOptions()
    if isinstance(value, Mapping):
        value = RadioOptions.model_validate(value)
    if isinstance(value, RadioOptions):
        return value if value.enabled else None
    raise ValueError(f"radio must be RadioOptions, a mapping, True, False or None; got {value!r}")
