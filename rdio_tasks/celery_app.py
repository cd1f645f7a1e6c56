"""The Celery application: ``celery -A rdio_tasks worker -Q gpu`` finds it as ``rdio_tasks.app``.

Importing this module is cheap (no torch, no CUDA): the API imports it to publish tasks, and the
worker's parent process imports it before forking children that load the model.
"""

from typing import Any

from celery import Celery, signals

from rdio_core.outbox import Queue

NO_BROKER = (
    "broker_url is not set (RDIO_BROKER_URL or broker_url in the config); "
    "`rdio-api up` runs an embedded Redis and sets it"
)

app = Celery("rdio_tasks", include=["rdio_tasks.tasks", "rdio_tasks.alerts_task", "rdio_tasks.analyze"])
app.config_from_object("celeryconfig")


@signals.celeryd_init.connect
def _refuse_without_broker(**_: Any) -> None:
    """A worker with no broker_url would connect to Celery's default (AMQP on localhost) or, before,
    to any Redis on 127.0.0.1:6379 and run other people's tasks: stop with one line instead."""
    if not app.conf.broker_url:
        raise SystemExit(f"rdio-api worker: refusing to start: {NO_BROKER}")


def worker_argv(name: str, *extra: str, queues: tuple[str, ...] = (Queue.GPU,)) -> list[str]:
    """The documented worker command (``celery -A rdio_tasks worker -Q gpu``) as argv for
    ``python -m celery``; pool and concurrency come from celeryconfig (threads, batching).
    ``queues=("alerts", "tones")`` is the worker that never loads Whisper (rdio_tasks.tasks)."""
    return [
        "-m",
        "celery",
        "-A",
        "rdio_tasks",
        "worker",
        "-Q",
        ",".join(queues),
        "-n",
        name,
        "--loglevel",
        "INFO",
        "-E",
        *extra,
    ]
