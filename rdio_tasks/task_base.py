"""The one retry style of every task: Celery's ``autoretry_for`` with exponential backoff.

A task raises :class:`~rdio_tasks.errors.TransientError` for a failure that may pass (the database
away, a receiver answering 503); Celery retries it after 0-2 s, 0-4 s, 0-8 s... (factor 2, full
jitter) up to the task's cap. ``max_retries`` is None: each task's row in the database bounds its
attempts (a job's or a delivery's attempt counter survives redeliveries and sweeper republishes,
Celery's retry count does not). The message is acked after the task, so a worker that dies mid-task
leaves it to the broker.
"""

from __future__ import annotations

from celery import Task

from rdio_tasks.errors import TransientError

#: Retry delays before the cap: 0-2 s, 0-4 s, 0-8 s... (full jitter).
RETRY_BACKOFF_FACTOR = 2


class RetryingTask(Task):
    autoretry_for = (TransientError,)
    retry_backoff = RETRY_BACKOFF_FACTOR
    retry_jitter = True
    max_retries: int | None = None
    acks_late = True
    #: The cap (seconds). Celery reads it once, when the worker builds the task: a subclass that
    #: takes it from the settings applies a change after a restart, like the broker's visibility
    #: timeout derived from it.
    retry_backoff_max = 60


def backoff_cap(retries: int, maximum: float) -> float:
    """The longest delay Celery may pick before retry number ``retries + 1`` (full jitter picks in
    0 .. this): where a row records when its next attempt is due at the latest."""
    return float(min(maximum, RETRY_BACKOFF_FACTOR * 2**retries))
