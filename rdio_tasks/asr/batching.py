"""The engine's side of cross-call batching: lazily started inference threads, one per model worker.

:class:`rdio_tasks.batcher.DynamicBatcher` knows nothing about Whisper; this glue starts it on the
first radio call with the engine's limits, rebuilds it when those limits change, and reports its
counters for ``engine.batch_stats``. Batching is off when the config says so or ``batch_size`` is set
to 1; unset, the size is what the calls in flight fill (``batch_size_for``).
"""

from __future__ import annotations

import threading
from typing import Any

from rdio_tasks.asr.config import EngineConfig, batch_size_for
from rdio_tasks.batcher import DynamicBatcher, RunBatch

__all__ = ["SharedBatcher"]


class SharedBatcher:
    """The inference threads shared by every call of one engine, created on first use."""

    def __init__(self, run_batch: RunBatch, workers: int = 1) -> None:
        self._run_batch = run_batch
        self.workers = workers  # passes at once: the model's CTranslate2 workers
        self._batcher: DynamicBatcher | None = None
        self._lock = threading.Lock()

    def get(self, config: EngineConfig) -> DynamicBatcher | None:
        """The running batcher for ``config``'s limits (None: batching off)."""
        if not config.cross_call_batching or config.batch_size == 1:
            return None
        with self._lock:
            if self._batcher is None:
                self._batcher = DynamicBatcher(
                    self._run_batch,
                    # Sized by the calls in flight it may be 1 (many cores, few calls): passes of
                    # one chunk still go most urgent first.
                    max_batch=batch_size_for(config, self.workers),
                    max_wait_ms=config.max_batch_wait_ms,
                    max_expect_ms=config.max_prepare_wait_ms,
                    name="whisper-inference",
                    workers=self.workers,
                )
            return self._batcher

    def close(self) -> None:
        """Stop the thread; the next :meth:`get` starts a new one."""
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def stats(self) -> dict[str, Any]:
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
