"""The outbox: rows committed first, their tasks published after, claimed under a lease.

- :mod:`~rdio_core.outbox.refs`: every task and queue by name (:class:`TaskRef`, :class:`Queue`).
- :mod:`~rdio_core.outbox.lease`: one compare-and-set claim for every leased table.
- :mod:`~rdio_core.outbox.publisher`: one :class:`Publisher` (after commit, sweeper, broker-down
  pause) parameterised by a task reference; the broker is injected at start-up.

What is published and swept for each table is put together in :mod:`rdio_core.pipeline`.
"""

from rdio_core.outbox.lease import ClaimOutcome, LeasedTable, changed, claim
from rdio_core.outbox.publisher import Broker, Message, Publisher, QueueCounts, Sweep
from rdio_core.outbox.refs import Queue, TaskRef

__all__ = [
    "Broker",
    "ClaimOutcome",
    "LeasedTable",
    "Message",
    "Publisher",
    "Queue",
    "QueueCounts",
    "Sweep",
    "TaskRef",
    "changed",
    "claim",
]
