"""PriorityLock: waiters get the lock most urgent first, then in arrival order, one at a time."""

from __future__ import annotations

import threading

import pytest

from rdio_tasks.priority_lock import PriorityLock
from tests.helpers import wait_until


def _queue_waiters(lock: PriorityLock, priorities: list[int], order: list[str]) -> list[threading.Thread]:
    """One thread per priority, started in list order, each queued before the next starts."""
    inside = threading.Lock()
    threads = []
    for n, priority in enumerate(priorities):

        def take(label: str = f"{priority}/{n}", priority: int = priority) -> None:
            with lock.hold(priority):
                assert inside.acquire(blocking=False), "two holders at once"
                order.append(label)
                inside.release()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: lock.waiting == n + 1, 5, f"waiter {n} queued")
    return threads


def test_waiters_get_the_lock_most_urgent_first_then_in_arrival_order() -> None:
    lock = PriorityLock()
    order: list[str] = []
    with lock.hold(5):  # a backfill call's turn under way: nobody jumps into it
        threads = _queue_waiters(lock, [5, 5, 3, 1, 5, 1], order)
        assert order == []
    for thread in threads:
        thread.join(5)
    assert order == ["1/3", "1/5", "3/2", "5/0", "5/1", "5/4"]
    assert lock.waiting == 0


def test_an_error_inside_releases_the_lock_for_the_next_waiter() -> None:
    lock = PriorityLock()
    order: list[str] = []
    with pytest.raises(RuntimeError), lock.hold(1):
        threads = _queue_waiters(lock, [4], order)
        raise RuntimeError("VAD failed")
    threads[0].join(5)
    assert order == ["4/0"]
    with lock.hold():  # free again
        pass


def test_a_waiter_interrupted_in_the_queue_leaves_it_and_the_next_one_gets_the_lock(monkeypatch) -> None:
    lock = PriorityLock()
    order: list[str] = []
    wait = lock._cond.wait

    def interrupted(timeout=None):
        if threading.current_thread().name == "interrupted":
            raise KeyboardInterrupt
        return wait(timeout)

    monkeypatch.setattr(lock._cond, "wait", interrupted)
    with lock.hold(5):
        threads = _queue_waiters(lock, [3, 5], order)

        def take() -> None:
            try:
                with lock.hold(1):
                    order.append("1 held")
            except KeyboardInterrupt:
                order.append("1 interrupted")

        first = threading.Thread(target=take, name="interrupted", daemon=True)
        first.start()
        first.join(5)
        assert order == ["1 interrupted"] and lock.waiting == 2  # it left the queue
    for thread in threads:
        thread.join(5)
    assert order == ["1 interrupted", "3/0", "5/1"] and lock.waiting == 0
