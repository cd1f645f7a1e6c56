"""The cross-call batcher's semantics, with a stand-in for the model (no Whisper needed)."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from rdio_tasks.batcher import DynamicBatcher, is_out_of_memory


class Recorder:
    """A fake model pass that records batch sizes and can fail on demand."""

    def __init__(self, delay: float = 0.0, oom_above: int | None = None, poison: object = None):
        self.batches: list[tuple[object, list]] = []
        self.delay = delay
        self.oom_above = oom_above
        self.poison = poison
        self.lock = threading.Lock()

    def __call__(self, key, payloads):
        with self.lock:
            self.batches.append((key, list(payloads)))
        if self.oom_above is not None and len(payloads) > self.oom_above:
            raise RuntimeError("CUDA failed with error out of memory")
        if self.poison is not None and self.poison in payloads:
            raise ValueError(f"cannot process {self.poison}")
        time.sleep(self.delay)
        return [f"{key}:{p}" for p in payloads]


def submit_all(batcher, items):
    return [batcher.submit(key, payload) for key, payload in items]


def test_concurrent_callers_share_batches_and_get_their_own_results():
    rec = Recorder(delay=0.02)
    b = DynamicBatcher(rec, max_batch=8, max_wait_ms=50)
    try:
        results: dict[int, list] = {}

        def call(n):
            results[n] = b.run("en", [f"c{n}-0", f"c{n}-1"])

        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        b.close()
    assert results == {n: [f"en:c{n}-0", f"en:c{n}-1"] for n in range(8)}
    assert max(len(p) for _, p in rec.batches) == 8  # 16 chunks from 8 calls in batches of up to 8
    assert len(rec.batches) <= 4


def test_only_same_key_items_share_a_batch():
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch=16, max_wait_ms=40)
    try:
        futures = submit_all(b, [("en", 1), ("es", 2), ("en", 3), ("es", 4)])
        assert [f.result(5) for f in futures] == ["en:1", "es:2", "en:3", "es:4"]
    finally:
        b.close()
    for key, payloads in rec.batches:
        assert {key} == {"en" if p in (1, 3) else "es" for p in payloads}


def test_batch_size_one_runs_items_alone():
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch=1, max_wait_ms=50)
    try:
        assert [f.result(5) for f in submit_all(b, [("k", i) for i in range(5)])] == [
            f"k:{i}" for i in range(5)
        ]
    finally:
        b.close()
    assert [len(p) for _, p in rec.batches] == [1] * 5


def test_max_wait_bounds_latency_of_a_lone_item():
    b = DynamicBatcher(Recorder(), max_batch=64, max_wait_ms=20)
    try:
        start = time.monotonic()
        assert b.submit("k", 1).result(5) == "k:1"
        assert time.monotonic() - start < 0.5
    finally:
        b.close()


def test_out_of_memory_halves_the_batch():
    rec = Recorder(oom_above=2)
    b = DynamicBatcher(rec, max_batch=8, max_wait_ms=100)
    try:
        futures = submit_all(b, [("k", i) for i in range(8)])
        assert [f.result(5) for f in futures] == [f"k:{i}" for i in range(8)]
    finally:
        b.close()
    sizes = [len(p) for _, p in rec.batches]
    assert sizes[0] == 8 and max(sizes[1:]) <= 4 and b.stats.oom_splits >= 2
    assert sorted(p for _, ps in rec.batches if len(ps) <= 2 for p in ps) == list(range(8))


def test_a_failing_item_does_not_fail_its_batch_mates():
    rec = Recorder(poison=3)
    b = DynamicBatcher(rec, max_batch=8, max_wait_ms=100)
    try:
        futures = submit_all(b, [("k", i) for i in range(6)])
        for i, f in enumerate(futures):
            if i == 3:
                with pytest.raises(ValueError, match="cannot process 3"):
                    f.result(5)
            else:
                assert f.result(5) == f"k:{i}"
    finally:
        b.close()
    assert b.stats.isolated_failures == 1


def test_oom_detection():
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("bad input"))


def test_urgent_items_go_first_and_alone_while_less_urgent_work_waits():
    """A live call's window arriving behind backfill runs in the next pass, without the backfill."""
    entered, gate = threading.Event(), threading.Event()
    rec = Recorder()

    def run_batch(key, payloads):
        if payloads == ["first"]:
            entered.set()
            assert gate.wait(5)  # the inference thread is busy while the rest arrives
        return rec(key, payloads)

    b = DynamicBatcher(run_batch, max_batch=8, max_wait_ms=100)
    try:
        first = b.submit("en", "first", priority=5)
        assert entered.wait(5)
        backfill = [b.submit("en", f"b{i}", priority=5) for i in range(6)]
        other = b.submit("es", "other", priority=5)
        live = [b.submit("en", "live1", priority=1), b.submit("es", "live2", priority=1)]
        gate.set()
        assert [f.result(5) for f in live] == ["en:live1", "es:live2"]
        assert first.result(5) == "en:first" and other.result(5) == "es:other"
        assert [f.result(5) for f in backfill] == [f"en:b{i}" for i in range(6)]
    finally:
        b.close()
    batches = [payloads for _, payloads in rec.batches]
    assert batches[:3] == [["first"], ["live1"], ["live2"]], batches
    # Then one priority everywhere: the usual rule (fill up to max_batch, or wait max_wait).
    assert sorted(batches[3:]) == [["b0", "b1", "b2", "b3", "b4", "b5"], ["other"]], batches


@pytest.mark.parametrize("max_expect_ms", [0, 5000])
def test_a_batch_waits_for_a_caller_still_preparing(max_expect_ms: float) -> None:
    """Two calls in flight, the second still preparing when the first submits: with a prepare wait
    they share one pass, without it the first goes alone (a batch holds about half the calls in
    flight, batcher.py)."""
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch=4, max_wait_ms=10, max_expect_ms=max_expect_ms)
    try:
        first, second = b.expect(), b.expect()
        started = time.monotonic()
        done = threading.Thread(target=lambda: b.run("k", ["a"], expected=first))
        done.start()
        deadline = time.monotonic() + 5
        while not (rec.batches or b._waiting) and time.monotonic() < deadline:
            time.sleep(0.005)  # the first call's item has arrived
        time.sleep(0.3)  # the second call's VAD
        assert b.run("k", ["b"], expected=second) == ["k:b"]
        done.join(5)
        elapsed = time.monotonic() - started
    finally:
        b.close()
    if max_expect_ms:
        assert [p for _, p in rec.batches] == [["a", "b"]]
        assert elapsed < 2  # taken when the last expected call arrived, not at the limit
    else:
        assert [p for _, p in rec.batches] == [["a"], ["b"]]


def test_a_caller_that_will_not_submit_stops_the_wait_and_the_limit_bounds_it() -> None:
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch=4, max_wait_ms=10, max_expect_ms=5000)
    try:
        silent = b.expect()
        threading.Timer(0.2, silent.done).start()  # no speech: it will submit nothing
        started = time.monotonic()
        assert b.run("k", ["a"]) == ["k:a"]
        assert 0.15 < time.monotonic() - started < 2  # woken by the withdrawal, not at the limit
        silent.done()  # withdrawing twice is harmless
        assert b._expected[3] == 0
    finally:
        b.close()
    b = DynamicBatcher(rec, max_batch=4, max_wait_ms=10, max_expect_ms=400)
    try:
        b.expect()  # a caller that hangs: the batch goes at the limit
        started = time.monotonic()
        assert b.run("k", ["b"]) == ["k:b"]
        assert 0.3 < time.monotonic() - started < 3
    finally:
        b.close()


def test_an_urgent_call_does_not_wait_for_less_urgent_calls_being_prepared() -> None:
    """Only a caller of the same priority would share the pass (batcher._urgent splits the rest)."""
    b = DynamicBatcher(Recorder(), max_batch=4, max_wait_ms=10, max_expect_ms=5000)
    try:
        b.expect(priority=5)  # a backfill call being prepared
        started = time.monotonic()
        assert b.run("k", ["live"], priority=1) == ["k:live"]
        assert time.monotonic() - started < 2
    finally:
        b.close()


def test_a_full_batch_of_another_key_does_not_queue_behind_one_that_waits() -> None:
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch=2, max_wait_ms=10, max_expect_ms=5000)
    try:
        b.expect()  # keeps k1's lone item waiting
        lone = b.submit("k1", 1)
        time.sleep(0.05)
        started = time.monotonic()
        assert b.run("k2", [2, 3]) == ["k2:2", "k2:3"]
        assert time.monotonic() - started < 2
        assert not lone.done()
    finally:
        b.close()
    assert lone.result(5) == "k1:1"  # closing takes what waits


@pytest.mark.parametrize("one_call", [False, True], ids=["two calls", "one call's two windows"])
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_that_many_passes_at_once(workers: int, one_call: bool) -> None:
    """Each worker thread takes a batch of its own: two passes overlap with two workers, never with
    one, also when one call brings more windows than a batch holds (one enqueue, one wake-up: the
    thread that takes the first batch wakes the next)."""
    inside, most, lock = 0, 0, threading.Lock()
    both = threading.Barrier(2)

    def run_batch(key, payloads):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        with contextlib.suppress(threading.BrokenBarrierError):
            both.wait(timeout=1.0)  # a second pass must start while this one runs
        with lock:
            inside -= 1
        return [f"{key}:{p}" for p in payloads]

    b = DynamicBatcher(run_batch, max_batch=1, max_wait_ms=0, workers=workers)
    try:
        if one_call:
            assert b.run("k", [0, 1]) == ["k:0", "k:1"]
        else:
            futures = [b.submit("k", n) for n in range(2)]
            assert [f.result(10) for f in futures] == ["k:0", "k:1"]
    finally:
        b.close()
    assert most == workers
    assert b.stats.batches == 2


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        DynamicBatcher(Recorder(), workers=0)
