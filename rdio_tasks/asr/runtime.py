"""Where a config runs: resolved model path, device, compute type and CPU threads.

Resolved only inside a worker child: picking ``device="auto"`` imports torch, and the Celery
parent process must never initialise CUDA (a CUDA context does not survive ``fork``). The model
path is resolved first, so a bad model name fails before torch is imported at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rdio_tasks.asr.config import DEVICES, EngineConfig
from rdio_tasks.asr.models import resolve_model

__all__ = ["Runtime", "resolve_compute_type", "resolve_device", "resolve_runtime"]


@dataclass(frozen=True)
class Runtime:
    """What a config resolves to once torch is importable (worker child only)."""

    model_path: str
    device: str
    compute_type: str
    cpu_threads: int  # torch's threads where they pay off (the aligner, a torch encoder)
    # CTranslate2's model workers (replicas sharing the weights, each serving one caller at a time)
    # and the threads of each. See :func:`model_parallelism`.
    model_workers: int
    model_threads: int


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str) -> str:
    """Pick the device; imports torch, so call only inside the worker child (after fork)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch sees no CUDA device")
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
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


MAX_CPU_MODEL_WORKERS = 4
"""Passes at once on a CPU. Measured on 2 cores only; the cap keeps a many-core box's workers fed
by the default 8 calls in flight (a pass holds about half of its share) and gives each the rest of
the cores as threads."""


def model_parallelism(config: EngineConfig, device: str, cpu_threads: int) -> tuple[int, int]:
    """CTranslate2's (workers, threads per worker) for ``config`` on ``device``.

    On the CPU with CTranslate2's encoder and no thread count set: one worker per core, each on one
    thread, up to ``MAX_CPU_MODEL_WORKERS`` workers that share the cores. A small Whisper's products
    are too small to split well across threads (tiny.en int8, 2 cores: one call at a time took
    680 ms of CPU per call on two threads, 493 ms on one), and the batcher runs as many passes at
    once as there are workers: ``bench/throughput.py --calls 48`` went from 2.60-2.65 to 3.50-3.56
    calls/s batched, transcripts unchanged. A GPU, a torch encoder or an explicit ``cpu_threads``
    keeps one worker.
    """
    if device == "cpu" and config.encoder != "torch" and config.cpu_threads == 0:
        workers = min(cpu_threads, MAX_CPU_MODEL_WORKERS)
        return workers, max(1, cpu_threads // workers)
    return 1, cpu_threads


def resolve_runtime(config: EngineConfig) -> Runtime:
    """Resolve ``config``; the model lookup runs first, its failures are cheap and need no torch."""
    model_path = resolve_model(config.model, config.models_dir)
    device = resolve_device(config.device)
    cpu_threads = config.cpu_threads if config.cpu_threads > 0 else available_cpus()
    workers, threads = model_parallelism(config, device, cpu_threads)
    return Runtime(
        model_path=model_path,
        device=device,
        compute_type=resolve_compute_type(config.compute_type, device),
        cpu_threads=cpu_threads,
        model_workers=workers,
        model_threads=threads,
    )
