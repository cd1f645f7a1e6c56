"""A call's preparation for the radio pipeline: conditioning, VAD windows and log-mel features.

Everything the model pass needs from one call's samples, computed either in the caller's thread
or in a pool of processes (``transcription.prepare_processes``). Why a pool: on the H100 batches
filled to 12.5 of 32 and the worker ran 20.8 calls/s (bench/gpu), while each call's conditioning,
VAD and features took 31-58 ms of a core in the worker's threads. Much of that is Python, which one
interpreter lock serialises, and 20 calls/s is about one core's worth of it. Processes
each hold their own lock and their own copy of the pyannote VAD (1.5 M parameters, on the
engine's device), so preparation can scale with the box's cores while the model process decodes.
Not yet measured on a GPU, so the setting is off by default (bench/gpu/run.sh prepare).

The pool is started with ``spawn``, never ``fork``: the worker process holds a CUDA context, and
a CUDA context does not survive a fork. A child that dies (out of memory, killed) breaks the
pool; the call that saw it is prepared in its own thread instead, and the next call starts a new
pool, so a broken child costs time, never a call.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rdio_tasks import radio
from rdio_tasks.asr.config import SAMPLE_RATE
from rdio_tasks.asr.vad import speech_chunks, whole_call_chunks
from rdio_tasks.radio import RadioOptions

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PreparePool", "Prepared", "VadParams", "chunk_features", "prepare"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VadParams:
    """The VAD thresholds one call uses (the call's radio options override the engine's)."""

    onset: float
    offset: float


@dataclass
class Prepared:
    """One call ready for the model: conditioned audio, its windows and their features."""

    audio: np.ndarray
    info: dict[str, Any]
    chunks: list[dict[str, float]]
    speech_seconds: float
    features: list[Any]


def chunk_features(n_mels: int, audio: np.ndarray, chunks: list[dict[str, float]]) -> list[Any]:
    """Log-mel features of each padded window (``from``..``to``), padded to 30 s like whisperx.

    NumPy arrays (views of whisperx's CPU tensors): they pickle back from a pool process as plain
    bytes, where a torch tensor would go through torch's shared-memory file descriptors.
    """
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    pieces = (audio[int(c["from"] * SAMPLE_RATE) : int(c["to"] * SAMPLE_RATE)][:N_SAMPLES] for c in chunks)
    return [
        log_mel_spectrogram(piece, n_mels=n_mels, padding=N_SAMPLES - piece.shape[0]).numpy()
        for piece in pieces
    ]


def prepare(
    samples: np.ndarray,
    options: RadioOptions,
    vad: Any,
    vad_params: VadParams,
    n_mels: int,
    lock: threading.Lock,
) -> Prepared:
    """Condition ``samples``, find the speech windows (or take the whole call) and their features.

    ``lock`` serialises ``vad`` (the pyannote model is not thread-safe)."""
    audio, info = radio.prepare_audio(samples, options)
    if options.vad_cut:
        chunks, speech_seconds = speech_chunks(
            vad,
            audio,
            options.vad_pad_seconds,
            onset=vad_params.onset,
            offset=vad_params.offset,
            lock=lock,
        )
    else:
        chunks, speech_seconds = whole_call_chunks(audio)
    info["speech_seconds"] = round(speech_seconds, 3)
    features = chunk_features(n_mels, audio, chunks) if chunks else []
    return Prepared(audio, info, chunks, speech_seconds, features)


# -- the process pool ----------------------------------------------------------------------------

_child_vad: Any = None
_child_lock = threading.Lock()


def _start_child(device: str) -> None:
    """Pool initializer: one torch thread (the pool is the parallelism) and a VAD on ``device``."""
    global _child_vad
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    import torch

    torch.set_num_threads(1)
    from rdio_tasks.asr.loader import route_whisperx_logging

    route_whisperx_logging()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torchcodec is not installed correctly")
        from whisperx.vads import Pyannote

    # The thresholds given here are the pipeline's own; speech_chunks passes each call's.
    _child_vad = Pyannote(torch.device(device), token=None, vad_onset=0.5, vad_offset=0.363)


def _prepare_in_child(
    samples: np.ndarray, options: RadioOptions, vad_params: VadParams, n_mels: int
) -> Prepared:
    return prepare(samples, options, _child_vad, vad_params, n_mels, _child_lock)


def _ready() -> int:
    return os.getpid()


class PreparePool:
    """``processes`` spawned processes that each prepare one call at a time, their VAD on
    ``device`` (the engine's: a CUDA context per process on a GPU box, ~0.5 GB of GPU memory)."""

    def __init__(self, processes: int, device: str = "cpu") -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.device = device
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(self.device,),
                )
                logger.info("started %d call-preparation processes", self.processes)
            return self._pool

    def warm(self) -> None:
        """Start every process now (each imports torch and loads the VAD, ~3 s), not on call 1."""
        pool = self._executor()
        for future in [pool.submit(_ready) for _ in range(self.processes)]:
            future.result()

    def prepare(
        self,
        samples: np.ndarray,
        options: RadioOptions,
        vad_params: VadParams,
        n_mels: int,
    ) -> Prepared | None:
        """The call prepared in a pool process; None when the pool broke (prepare it here instead).

        Errors raised by the preparation itself (bad options, a VAD failure) propagate as they
        would in the caller's thread."""
        pool = self._executor()
        try:
            return pool.submit(_prepare_in_child, samples, options, vad_params, n_mels).result()
        except BrokenProcessPool:
            logger.warning("a call-preparation process died; restarting the pool")
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return None

    def pids(self) -> list[int]:
        """The live processes' ids (tests kill one to check the pool recovers)."""
        pool = self._pool
        return sorted(getattr(pool, "_processes", {}) or {}) if pool is not None else []

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
