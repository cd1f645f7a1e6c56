"""The outbox: rows committed first, their tasks published after, claimed under a lease.

- :mod:`~rdio_core.outbox.refs`: every task and queue by name (:class:`TaskRef`, :class:`Queue`).
- :mod:`~rdio_core.outbox.lease`: one compare-and-set claim for every leased table.
- :mod:`~rdio_core.outbox.publisher`: one :class:`Publisher` (after commit, sweeper, broker-down
  pause) parameterised by a task reference; the broker is injected at start-up.

What is published and swept for each table is put together in :mod:`rdio_core.pipeline`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rdio_core.outbox.refs import Queue, TaskRef

if TYPE_CHECKING:
    from rdio_core.outbox.lease import ClaimOutcome, LeasedTable, changed, claim
    from rdio_core.outbox.publisher import Broker, Message, Publisher, QueueCounts, Sweep

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

#: Loaded on first use: the queue and task names are read by every ``rdio-api`` command's parser,
#: the lease and the publisher need SQLAlchemy (see ``rdio_api.importers.arguments``).
_LAZY = {
    "ClaimOutcome": "lease",
    "LeasedTable": "lease",
    "changed": "lease",
    "claim": "lease",
    "Broker": "publisher",
    "Message": "publisher",
    "Publisher": "publisher",
    "QueueCounts": "publisher",
    "Sweep": "publisher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"rdio_core.outbox.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
