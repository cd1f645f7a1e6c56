"""Celery side of rdio-api: the app, the ``transcribe_call`` task and the WhisperX engine.

``celery -A rdio_tasks worker -Q gpu`` uses ``rdio_tasks.app``. Nothing here imports the HTTP API,
and nothing imported at module level touches torch or CUDA (the worker's parent process forks).
"""

import sys

from rdio_tasks.celery_app import app
from rdio_tasks.flower_guard import guard_plain_celery_flower

guard_plain_celery_flower(sys.argv)

celery = app

__all__ = ["app", "celery"]
