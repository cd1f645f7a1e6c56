"""The one place rdio-api reads kombu's Redis transport internals: how deep the gpu queue is.

kombu has no public call for "messages waiting in a queue across its priority levels": its Redis
transport keeps one list per priority step and names them with the private
``Channel._q_for_pri(queue, priority)``. Counting them (plus the hash of reserved, unacked
messages, whose name is the documented ``unacked_key`` transport option) is what lets the sweeper
tell "the broker lost jobs" from "the broker still holds them". ``tests/test_broker_compat.py``
runs this against a real redis-server and fails naming the symbol when a kombu upgrade moves it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BrokerCompatError", "queue_depth"]

#: The private symbol read below, named in errors and in the test.
PRIORITY_QUEUE_NAME = "kombu.transport.redis.Channel._q_for_pri"


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


def queue_depth(channel: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (all priorities) plus those reserved but not yet acked."""
    client = channel.client
    waiting = sum(client.llen(name) for name in priority_queue_names(channel, queue))
    return int(waiting + client.hlen(channel.unacked_key))


def _kombu_version() -> str:
    from importlib.metadata import version

    return version("kombu")
