"""Dynamic batching across calls: many tasks submit work items, worker threads run them in batches.

Radio calls are mostly 2-15 s, one 30-second Whisper window each, so per-call decoding runs the
GPU almost empty. Here every in-flight task hands its chunks to the inference threads: one on a
GPU, one per CTranslate2 model worker on a CPU (``workers``; rdio_tasks/asr/runtime.py), each
running its own pass. A thread takes up to ``max_batch`` waiting items that share
a key (same model, language and decoding options), waiting at most ``max_wait_ms`` for a batch to
fill, and runs them in one pass. Each caller gets its own result or its own exception:

- an out-of-memory error halves the batch and retries the halves;
- any other error re-runs the items one by one, so a bad item fails alone and never fails its
  batch-mates.

Items carry their job's priority (1 most urgent .. 5). While less urgent work waits too, the most
urgent items go at once and alone: a live dispatch call does not wait for a batch to fill nor ride
in a full batch of backfill, whose pass takes as long as its size on a CPU (bench/throughput.py:
encoder CPU time per window does not fall with the batch there), so it waits for at most the pass
already running. With several workers a less urgent pass may run beside an urgent one on another
worker: each has its own core, so the urgent pass waits for neither.

A caller that will submit soon (a call whose audio is being conditioned, its speech found, its
language detected) can say so with :meth:`DynamicBatcher.expect`. While such callers are pending a
batch that is not full waits for them, at most ``max_expect_ms``: with N calls in flight and a pass
of up to ``max_batch`` under way, the calls of that pass are not preparing their next, so a batch
that only waits ``max_wait_ms`` holds about N/2 items whatever ``max_batch`` is (bench/throughput.py,
8 in flight: 3.5 chunks per batch with ``max_batch`` 4 or 8). On 2 CPU cores (tiny.en, 8 in flight,
``max_batch`` 8) a 1000 ms wait filled batches to 81-93% against 43-46%, and cost 6% of calls/s
(ratio to per-call 1.35-1.36x against 1.43-1.45x, alternated runs): while a pass waits, a core
idles, since calls are prepared one VAD at a time. So the engine's default is 0, left for a GPU,
whose pass costs about the same full or half empty, to measure (bench/gpu/run.sh prepare).

The batcher knows nothing about Whisper: ``run_batch(key, payloads) -> results`` does the work.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/CPU allocation failures from torch or CTranslate2 (they raise RuntimeError/MemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return (
        "out of memory" in text or "cuda_error_out_of_memory" in text or "cublas_status_alloc_failed" in text
    )


@dataclass
class _Item:
    key: Hashable
    payload: Any
    priority: int = 3
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    enqueued: float = field(default_factory=time.monotonic)


class Expected:
    """One caller's promise to submit items of ``priority`` soon; :meth:`done` (idempotent)
    withdraws it."""

    def __init__(self, batcher: DynamicBatcher, priority: int) -> None:
        self._batcher: DynamicBatcher | None = batcher
        self.priority = priority

    def done(self) -> None:
        batcher = self._batcher
        if batcher is not None:
            with batcher._cond:
                batcher._release(self)

    def _drop(self) -> bool:
        """Forget the batcher (the caller holds its lock); False when already done."""
        if self._batcher is None:
            return False
        self._batcher = None
        return True


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    oom_splits: int = 0
    isolated_failures: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        max_batch: int = 16,
        max_wait_ms: float = 30.0,
        name: str = "batcher",
        max_expect_ms: float = 0.0,
        workers: int = 1,
    ):
        """``workers`` threads each take a batch and run it, so up to that many passes run at once
        (a model with as many CTranslate2 workers serves them in parallel)."""
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_expect = max(self.max_wait, max_expect_ms / 1000.0)
        self._expected: Counter[int] = Counter()  # callers that will submit soon, by priority
        self.stats = BatchStats()
        # Items wait per key, oldest key first, so one busy key cannot starve another.
        self._waiting: OrderedDict[Hashable, list[_Item]] = OrderedDict()
        self._cond = threading.Condition()
        self._stats_lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{n}" if workers > 1 else name, daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- callers ---------------------------------------------------------------------------------

    def submit(self, key: Hashable, payload: Any, priority: int = 3) -> concurrent.futures.Future:
        item = _Item(key, payload, priority)
        self._enqueue(key, [item])
        return item.future

    def _enqueue(self, key: Hashable, items: list[_Item], expected: Expected | None = None) -> None:
        """Queue ``items`` under ``key``, withdrawing ``expected`` in the same locked step."""
        if expected is not None and expected._batcher is not self:
            expected.done()  # another batcher's (rebuilt since): withdrawn there
            expected = None
        with self._cond:
            if expected is not None:
                self._release(expected)
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._waiting.setdefault(key, []).extend(items)
            self._cond.notify()

    def expect(self, priority: int = 3) -> Expected:
        """Say that this caller will submit items of ``priority`` soon; pass the result to
        :meth:`run`, or call its ``done()`` when it will not (no speech, an error)."""
        ticket = Expected(self, priority)
        with self._cond:
            self._expected[priority] += 1
        return ticket

    def _release(self, ticket: Expected) -> None:
        if ticket._drop():
            self._expected[ticket.priority] -= 1
            self._cond.notify()

    def run(
        self, key: Hashable, payloads: Sequence[Any], priority: int = 3, expected: Expected | None = None
    ) -> list[Any]:
        """Submit several items (one call's chunks) and wait for all; the first error is raised.

        ``expected`` (this caller's :meth:`expect`) is withdrawn in the same step as the items
        arrive: the inference thread sees the caller as expected or its items as waiting, never
        neither."""
        items = [_Item(key, p, priority) for p in payloads]
        self._enqueue(key, items, expected)
        return [it.future.result() for it in items]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + 30
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- inference thread ---------------------------------------------------------------------------

    def _urgent(self) -> tuple[Hashable, list[_Item]] | None:
        """The most urgent waiting items of one key (oldest key first), if less urgent work waits
        too; None when every waiting item has the same priority."""
        priorities = {it.priority for items in self._waiting.values() for it in items}
        if len(priorities) < 2:
            return None
        best = min(priorities)
        for key, items in self._waiting.items():
            urgent = [it for it in items if it.priority == best]
            if urgent:
                return key, urgent[: self.max_batch]
        return None  # pragma: no cover - best came from some key's items

    def _take(self, key: Hashable, batch: list[_Item]) -> list[_Item]:
        """Remove ``batch`` from ``key``'s waiting items; the rest go to the back of the line."""
        taken = {id(it) for it in batch}
        rest = [it for it in self._waiting.pop(key) if id(it) not in taken]
        if rest:
            self._waiting[key] = rest  # goes to the back: other keys get a turn
        if self._waiting:
            self._cond.notify()  # another worker may take what is left (one wake-up per enqueue)
        return batch

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while True:
                urgent = self._urgent() if self._waiting else None
                if urgent is not None:
                    return self._take(*urgent)
                if self._waiting:
                    full = [k for k, waiting in self._waiting.items() if len(waiting) >= self.max_batch]
                    key = full[0] if full else next(iter(self._waiting))
                    items = self._waiting[key]
                    age = time.monotonic() - items[0].enqueued
                    # Only a caller of the same priority would ride in this batch: a more or less
                    # urgent one arriving makes _urgent() split them anyway.
                    limit = self.max_expect if self._expected[items[0].priority] > 0 else self.max_wait
                    if full or age >= limit or self._closed:
                        return self._take(key, items[: self.max_batch])
                    self._cond.wait(limit - age)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _execute(self, batch: list[_Item]) -> None:
        key = batch[0].key
        try:
            results = self.run_batch(key, [it.payload for it in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            if is_out_of_memory(exc) and len(batch) > 1:
                half = len(batch) // 2
                with self._stats_lock:
                    self.stats.oom_splits += 1
                log.warning(
                    "out of memory on a batch of %d; retrying as %d + %d", len(batch), half, len(batch) - half
                )
                self._execute(batch[:half])
                self._execute(batch[half:])
            elif len(batch) > 1:
                log.warning("batch of %d failed (%s); running its items one by one", len(batch), exc)
                for item in batch:
                    self._execute([item])
            else:
                with self._stats_lock:
                    self.stats.isolated_failures += 1
                batch[0].future.set_exception(exc)
            return
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.sizes[len(batch)] = self.stats.sizes.get(len(batch), 0) + 1
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)
