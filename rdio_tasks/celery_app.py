"""The Celery application: ``celery -A rdio_tasks worker -Q gpu`` finds it as ``rdio_tasks.app``.

Importing this module is cheap (no torch, no CUDA): the API imports it to publish tasks, and the
worker's parent process imports it before forking children that load the model.
"""

from celery import Celery

app = Celery("rdio_tasks", include=["rdio_tasks.tasks"])
app.config_from_object("celeryconfig")


def worker_argv(name: str, *extra: str) -> list[str]:
    """The documented worker command (``celery -A rdio_tasks worker -Q gpu``) as argv for
    ``python -m celery``; pool and concurrency come from celeryconfig (threads, batching)."""
    return [
        "-m",
        "celery",
        "-A",
        "rdio_tasks",
        "worker",
        "-Q",
        "gpu",
        "-n",
        name,
        "--loglevel",
        "INFO",
        "-E",
        *extra,
    ]
