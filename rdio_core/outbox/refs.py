"""Every Celery task and queue by name, declared once.

The task decorators (``rdio_tasks``), the routes in ``celeryconfig.py``, the publishers
(:mod:`rdio_core.outbox.publisher`) and the worker command line (``rdio-api worker -Q``) all read
these, so a task's name or queue cannot drift between the process that sends it and the one that
runs it (each name was written three times, ``"gpu"`` nine, before).
"""

from __future__ import annotations

from enum import Enum, StrEnum


class Queue(StrEnum):
    """A broker queue, named by what it holds; a worker's ``-Q`` picks the ones it consumes.

    ``tones`` holds tone analysis, apart from ``alerts`` (deliveries): both are light, load no model
    and must never wait behind a transcription, so ``rdio-api up`` runs one worker on the two; but
    the analysis (~15 ms per call, CPU) and a delivery (up to ``alerts.timeout_seconds`` waiting on
    somebody else's server) have different costs, and a queue named after what it holds can be given
    its own worker when a slow webhook starts to delay tone analysis.
    """

    GPU = "gpu"  # transcriptions: the worker loads Whisper
    TONES = "tones"  # dispatch-tone analysis of each stored call (no model)
    ALERTS = "alerts"  # alert deliveries: webhooks and Apprise notifications (no model)


class TaskRef(Enum):
    """A task's registered name and the queue it is routed to."""

    TRANSCRIBE = ("rdio_tasks.transcribe_call", Queue.GPU)
    ANALYZE = ("rdio_tasks.analyze_call", Queue.TONES)
    DELIVER_ALERT = ("rdio_tasks.deliver_alert", Queue.ALERTS)

    def __init__(self, task_name: str, queue: Queue) -> None:
        self.task_name = task_name
        self.queue = queue


def celery_routes() -> dict[str, dict[str, str]]:
    """``task_routes`` for celeryconfig: every task on its queue."""
    return {ref.task_name: {"queue": ref.queue.value} for ref in TaskRef}
