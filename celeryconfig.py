"""Celery broker and queue settings for rdio-api (loaded by ``rdio_tasks`` with config_from_object).

Values that depend on the deployment (broker URL, time limits) come from the rdio settings object
(``RDIO_*`` env / YAML), so one config file drives the API and every GPU worker.
"""

from rdio_core.outbox import Queue
from rdio_core.outbox.refs import celery_routes
from rdio_core.settings import load_settings

_settings = load_settings()
_tx = _settings.transcription

# Where tasks travel, and never a guess: a localhost default would publish calls into whatever Redis
# answers on 127.0.0.1:6379 (on a shared host, someone else's). The embedded system (`rdio-api up`)
# sets RDIO_BROKER_URL to its own Redis; with none, `rdio-api serve` publishes nothing (jobs wait as
# `pending`) and a worker refuses to start (rdio_tasks.celery_app).
broker_url = _settings.broker_url
# No result backend: results live in the database and Flower shows outcomes from task events. A Redis
# backend made every publish with the broker down spend ~19 s in its reconnect loop (0.004 s without).
task_ignore_result = True

# Ack after the task finishes, so a worker that dies mid-call leaves the message to be redelivered.
task_acks_late = True
# A pool child killed (OOM, SIGKILL) mid-task: requeue its message instead of acking it.
task_reject_on_worker_lost = True
# Threads, not prefork: many transcribe_call tasks run in one process so their chunks can share a
# GPU batch (rdio_tasks.batcher); each task keeps its own ack, retry and result. The model is loaded
# once, lazily, in this process; no fork follows, so CUDA is never touched before a fork.
worker_pool = "threads"
worker_concurrency = _tx.concurrency
# One message reserved at a time per thread: a long call never holds others hostage on a busy GPU.
worker_prefetch_multiplier = 1
# A pool process loads the model (seconds to a minute on a GPU box) before it reports "up"; the
# default 4 s makes the parent kill every new child in a loop after a crash.
worker_proc_alive_timeout = 300
# Hard limit kills a stuck transcription under prefork (if a user picks it); the threads pool does
# not enforce Celery time limits, so the task also bounds its own wait on the batcher.
task_time_limit = _tx.task_time_limit_seconds
task_soft_time_limit = max(5, _tx.task_time_limit_seconds - 30)

broker_transport_options = {
    # Redis redelivers an unacked message after this long. It must exceed the task time limit plus
    # the longest retry delay, or a slow call would be handed to a second worker while still running.
    "visibility_timeout": _tx.task_time_limit_seconds + _tx.retry_backoff_max_seconds + 60,
    # Ten priority levels (0 = most urgent); job priority 1..5 maps onto 0, 2, 4, 6, 8.
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
    # Fail fast when Redis is down so an upload is never held up by the broker.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
# Publishing from the API: one quick retry, then give up; the job stays `pending` in the database
# and the sweeper publishes it once the broker is back.
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
broker_connection_timeout = 2
# Workers keep trying to reach the broker when it restarts, instead of exiting.
broker_connection_retry_on_startup = True
broker_connection_max_retries = None

# Task events for Flower (worker side) and "sent" events from the publisher.
worker_send_task_events = True
task_send_sent_event = True

# Every task on its queue (rdio_core.outbox.refs.TaskRef): transcription on `gpu`, which
# `celery -A rdio_tasks worker -Q gpu` consumes; tone analysis on `tones` and alert deliveries on
# `alerts`, never behind a transcription (`rdio-api worker -Q alerts,tones`, no model).
task_routes = celery_routes()
task_default_queue = Queue.GPU.value

task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True
worker_hijack_root_logger = False
