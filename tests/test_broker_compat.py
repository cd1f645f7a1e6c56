"""The kombu internal the sweeper counts the gpu queue with is still where
``rdio_tasks/broker_compat.py`` expects it (a real redis-server, the app's transport options).

Run this first after raising the kombu / celery pins: a failure names the symbol that moved.
"""

from __future__ import annotations

import pytest
from kombu import Connection

from rdio_core.embedded_redis import EmbeddedRedis
from rdio_tasks import broker_compat
from rdio_tasks.celery_app import app
from rdio_tasks.dispatch import QUEUE


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
        reserved.ack()
        assert broker_compat.queue_depth(channel, QUEUE) == 2
        queue.close()


def test_a_moved_symbol_is_named():
    class Moved:  # a channel of a kombu that no longer has _q_for_pri
        priority_steps = [0]

    with pytest.raises(broker_compat.BrokerCompatError, match=r"Channel\._q_for_pri"):
        broker_compat.priority_queue_names(Moved(), QUEUE)
