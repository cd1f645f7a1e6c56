"""The kombu internal the sweeper counts the gpu queue with is still where
``rdio_tasks/broker_compat.py`` expects it (a real redis-server, the app's transport options).

Run this first after raising the kombu / celery pins: a failure names the symbol that moved.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from rdio_core.embedded_redis import EmbeddedRedis
from rdio_core.outbox import Queue
from rdio_tasks import broker_compat
from rdio_tasks.celery_app import app
from tests.conftest import ADMIN_KEY, base_config
from tests.helpers import REPO, ServerProcess, clip, wait_for
from tests.test_upload import fresh_system, post, sdrtrunk_fields

QUEUE = Queue.GPU.value


@pytest.fixture
def broker(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    yield server
    server.stop()


def test_queue_depth_counts_every_priority_and_the_reserved(broker):
    options = app.conf.broker_transport_options
    with Connection(broker.url, transport_options=options) as conn:
        queue = conn.SimpleQueue(QUEUE)
        for priority in (0, 4, 9):
            queue.put({"n": priority}, priority=priority)
        channel = conn.default_channel
        # The private symbol, read through the adapter: BrokerCompatError names it if it is gone.
        names = broker_compat.priority_queue_names(channel, QUEUE)
        # The lists kombu really wrote are among the names the adapter counts.
        written = {key.decode() for key in channel.client.keys(f"{QUEUE}*")}
        assert written and written <= names, (written, names)
        assert broker_compat.queue_depth(channel, QUEUE) == 3
        reserved = queue.get(timeout=2)  # taken, not acked: still the broker's to redeliver
        assert broker_compat.queue_depth(channel, QUEUE) == 3
        assert broker_compat.queue_counts(channel, QUEUE) == (2, 1)
        assert broker_compat.queue_counts(channel, "alerts") == (0, 0)  # the hash is shared
        reserved.ack()
        assert broker_compat.queue_depth(channel, QUEUE) == 2
        queue.close()


def test_a_changed_unacked_layout_is_named(broker):
    with Connection(broker.url, transport_options=app.conf.broker_transport_options) as conn:
        channel = conn.default_channel
        channel.client.hset(channel.unacked_key, "tag", b"not kombu's list")
        with pytest.raises(broker_compat.BrokerCompatError, match=r"QoS\.append"):
            broker_compat.queue_counts(channel, QUEUE)


def test_a_moved_symbol_is_named():
    class Moved:  # a channel of a kombu that no longer has _q_for_pri
        priority_steps = [0]

    with pytest.raises(broker_compat.BrokerCompatError, match=r"Channel\._q_for_pri"):
        broker_compat.priority_queue_names(Moved(), QUEUE)


# A worker that takes messages and dies before acknowledging them (SIGKILL, OOM killer, power cut).
_DYING_WORKER = """
import sys, time
from kombu import Connection
from rdio_tasks.celery_app import app
with Connection(sys.argv[1], transport_options=app.conf.broker_transport_options) as conn:
    queue = conn.SimpleQueue("gpu")
    for _ in range(int(sys.argv[2])):
        queue.get(timeout=10)  # reserved, never acked
    print("reserved", flush=True)
    time.sleep(600)
"""


def queue_figures(server) -> tuple[dict, dict[str, float]]:
    headers = {"X-API-Key": ADMIN_KEY}
    status = httpx.get(f"{server.url}/api/transcription/queue/status", headers=headers, timeout=10).json()
    text = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10).text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return status, samples


def test_a_killed_workers_messages_are_not_a_backlog(broker, tmp_path, database_url):
    """Issue 25, item 4. Before: broker_queue_depth (and rdio_transcription_queue_depth) stayed at 3
    after the queue had drained into a worker that was then SIGKILLed: the unacked hash was counted
    as waiting work until Redis's visibility timeout (13 minutes by default) handed it back."""
    config = base_config(tmp_path / "data", database_url, broker_url=broker.url)
    config["transcription"] = {"enabled": True, "min_audio_seconds": 0}
    server = ServerProcess(tmp_path / "api", config).start()
    dying = None
    try:
        for _ in range(3):
            assert post(server, sdrtrunk_fields(fresh_system()), clip("speech.wav")).status_code == 200
        assert wait_for(lambda: queue_figures(server)[0]["broker_queue_depth"] == 3, timeout=20)
        dying = subprocess.Popen(
            [sys.executable, "-c", _DYING_WORKER, broker.url, "3"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert dying.stdout is not None and dying.stdout.readline().strip() == "reserved"
        dying.send_signal(signal.SIGKILL)
        dying.wait(10)

        status, samples = queue_figures(server)
        assert status["broker_queue_depth"] == 0, status  # nothing a worker could take now
        assert status["broker_reserved"] == 3, status  # said apart: held until redelivered
        assert samples["rdio_transcription_queue_depth"] == 0
        assert samples["rdio_transcription_queue_reserved"] == 3
    finally:
        if dying is not None and dying.poll() is None:
            dying.kill()
        server.stop()
