"""The one place rdio-api reads kombu's Redis transport internals: how deep the gpu queue is.

kombu has no public call for "messages waiting in a queue across its priority levels": its Redis
transport keeps one list per priority step and names them with the private
``Channel._q_for_pri(queue, priority)``. Reserved, unacked messages sit in one hash for every queue
(the documented ``unacked_key`` transport option), each value kombu's ``[payload, exchange,
routing_key]``. The two are reported apart (:class:`QueueCounts`): waiting messages are work a
worker can take now; reserved ones are running, prefetched, waiting out a retry countdown, or held
by a worker that died until the visibility timeout hands them back (13 minutes by default). Counted
together, a SIGKILLed worker's 53 messages showed as a backlog after the queue had drained. The
sweeper still uses the total to tell "the broker lost jobs" from "the broker still holds them".
``tests/test_broker_compat.py`` runs this against a real redis-server and fails naming the symbol
when a kombu upgrade moves it.
"""

from __future__ import annotations

import json
from typing import Any

from rdio_core.outbox import QueueCounts

__all__ = ["BrokerCompatError", "QueueCounts", "queue_counts", "queue_depth"]

#: The private symbol read below, named in errors and in the test.
PRIORITY_QUEUE_NAME = "kombu.transport.redis.Channel._q_for_pri"
#: The layout of the unacked hash's values, read below.
UNACKED_VALUE = "kombu.transport.redis.QoS.append's [payload, exchange, routing_key]"


class BrokerCompatError(RuntimeError):
    """The installed kombu no longer has what this module reads; the message names it."""


def priority_queue_names(channel: Any, queue: str) -> set[str]:
    """The Redis lists that hold ``queue``'s messages, one per priority step."""
    name_for = getattr(channel, "_q_for_pri", None)
    if name_for is None:
        raise BrokerCompatError(
            f"{PRIORITY_QUEUE_NAME} is gone in kombu {_kombu_version()}: update rdio_tasks/broker_compat.py"
        )
    return {name_for(queue, pri) for pri in channel.priority_steps}


def queue_counts(channel: Any, queue: str) -> QueueCounts:
    """``queue``'s messages waiting (all priorities) and reserved (unacked, this queue's only: the
    hash also holds the alerts queue's). Celery routes a queue's messages with its own name."""
    client = channel.client
    waiting = sum(client.llen(name) for name in priority_queue_names(channel, queue))
    reserved = 0
    for _, value in client.hscan_iter(channel.unacked_key):
        try:
            routing_key = json.loads(value)[2]
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise BrokerCompatError(
                f"unacked message not in {UNACKED_VALUE} in kombu {_kombu_version()} ({exc}): "
                "update rdio_tasks/broker_compat.py"
            ) from None
        reserved += routing_key == queue
    return QueueCounts(int(waiting), reserved)


def queue_depth(channel: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (all priorities) plus those reserved but not yet acked."""
    return queue_counts(channel, queue).total


def _kombu_version() -> str:
    from importlib.metadata import version

    return version("kombu")
