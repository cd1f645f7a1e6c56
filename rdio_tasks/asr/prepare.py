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
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rdio_tasks import radio
from rdio_tasks.asr.config import SAMPLE_RATE
from rdio_tasks.asr.vad import speech_chunks, whole_call_chunks
from rdio_tasks.priority_lock import PriorityLock
from rdio_tasks.radio import RadioOptions

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PreparePool", "Prepared", "VadParams", "chunk_features", "prepare"]

logger = logging.getLogger(__name__)

#: Breaks in a row after which the pool stays off (an initializer that cannot load the VAD).
MAX_BREAKS = 3


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
    lock: PriorityLock,
    priority: int = 3,
) -> Prepared:
    """Condition ``samples``, find the speech windows (or take the whole call) and their features.

    ``lock`` serialises ``vad`` (the pyannote model is not thread-safe), most urgent ``priority``
    first."""
    audio, info = radio.prepare_audio(samples, options)
    if options.vad_cut:
        chunks, speech_seconds = speech_chunks(
            vad,
            audio,
            options.vad_pad_seconds,
            onset=vad_params.onset,
            offset=vad_params.offset,
            lock=lock,
            priority=priority,
        )
    else:
        chunks, speech_seconds = whole_call_chunks(audio)
    info["speech_seconds"] = round(speech_seconds, 3)
    features = chunk_features(n_mels, audio, chunks) if chunks else []
    return Prepared(audio, info, chunks, speech_seconds, features)


# -- the process pool ----------------------------------------------------------------------------

_child_vad: Any = None
_child_lock = PriorityLock()  # one call at a time in a pool process: the order never matters


def _start_child(device: str) -> None:
    """Pool initializer: one torch thread (the pool is the parallelism) and a VAD on ``device``."""
    global _child_vad
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    import torch

    torch.set_num_threads(1)
    vad_device = torch.device(device)  # a malformed device fails here, before whisperx's imports
    from rdio_tasks.asr.loader import route_whisperx_logging

    route_whisperx_logging()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torchcodec is not installed correctly")
        from whisperx.vads import Pyannote

    # The thresholds given here are the pipeline's own; speech_chunks passes each call's.
    _child_vad = Pyannote(vad_device, token=None, vad_onset=0.5, vad_offset=0.363)


def _prepare_in_child(
    samples: np.ndarray, options: RadioOptions, vad_params: VadParams, n_mels: int
) -> Prepared:
    return prepare(samples, options, _child_vad, vad_params, n_mels, _child_lock)


def _ready() -> int:
    return os.getpid()


class PreparePool:
    """``processes`` spawned processes that each prepare one call at a time, their VAD on
    ``device`` (the engine's: a CUDA context per process on a GPU box, ~0.5 GB of GPU memory).

    Whatever goes wrong with the pool itself (a child killed, an initializer that fails, the pool
    closed by a reload while a call waits on it) makes :meth:`prepare` answer None: the caller then
    prepares the call in its own thread. After :data:`MAX_BREAKS` breaks in a row the pool stays
    off (logged as an error) rather than spawning and losing processes on every call."""

    def __init__(self, processes: int, device: str = "cpu") -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.device = device
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._breaks = 0

    def usable(self) -> bool:
        """False once closed or given up on. A daemonic process (Celery's prefork children) may not
        have children, so the pool is off there from the start."""
        if multiprocessing.current_process().daemon and not self._closed:
            logger.error("prepare_processes needs a worker with the threads pool (-P threads)")
            self._closed = True
        return not self._closed

    def _executor(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is None and self.usable():
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(self.device,),
                )
                logger.info("started %d call-preparation processes", self.processes)
            return self._pool

    def warm(self) -> bool:
        """Start every process now (each imports torch and loads the VAD, ~3 s), not on call 1;
        False when the pool could not start (calls are then prepared in their threads)."""
        pool = self._executor()
        if pool is None:
            return False
        try:
            for future in [pool.submit(_ready) for _ in range(self.processes)]:
                future.result()
        except Exception as exc:  # a failing initializer or a child killed while starting
            self._broke(pool, exc)
            return False
        return True

    def prepare(
        self,
        samples: np.ndarray,
        options: RadioOptions,
        vad_params: VadParams,
        n_mels: int,
    ) -> Prepared | None:
        """The call prepared in a pool process; None when the pool is unusable (prepare it here).

        Errors raised by the preparation itself (bad options, a VAD failure) propagate as they
        would in the caller's thread."""
        pool = self._executor()
        if pool is None:
            return None
        try:
            prepared: Prepared = pool.submit(_prepare_in_child, samples, options, vad_params, n_mels).result()
        except (BrokenProcessPool, CancelledError, RuntimeError) as exc:
            shut_under_us = self._closed or self._pool is not pool  # "cannot schedule ... after shutdown"
            if type(exc) is RuntimeError and not shut_under_us:
                raise  # not the pool's state: the preparation's own error
            self._broke(pool, exc)
            return None
        self._breaks = 0
        return prepared

    def _broke(self, pool: ProcessPoolExecutor, exc: BaseException) -> None:
        """Drop a pool that broke or was shut down under a call; give up after MAX_BREAKS in a row."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
                self._breaks += 1
                if self._breaks >= MAX_BREAKS and not self._closed:
                    self._closed = True
                    logger.error(
                        "call-preparation processes broke %d times in a row (%s); preparing in the "
                        "worker's threads from now on",
                        self._breaks,
                        exc,
                    )
                elif not self._closed:
                    logger.warning("a call-preparation process died (%s); restarting the pool", exc)
        pool.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The live processes' ids (tests kill one to check the pool recovers)."""
        pool = self._pool
        return sorted(getattr(pool, "_processes", {}) or {}) if pool is not None else []

    def close(self) -> None:
        """Stop the processes; calls waiting on them are prepared in their threads instead."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
