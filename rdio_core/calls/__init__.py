"""A call's shapes and filters, declared once (``shapes``: the fields; ``filter``: which calls)."""

from rdio_core.calls.filter import CallFilter
from rdio_core.calls.shapes import (
    SEARCHED,
    SENT_TEXT,
    CallData,
    CallFields,
    CallLists,
    CallSummary,
    Sent,
    StoredCall,
)

__all__ = [
    "SEARCHED",
    "SENT_TEXT",
    "CallData",
    "CallFields",
    "CallFilter",
    "CallLists",
    "CallSummary",
    "Sent",
    "StoredCall",
]
