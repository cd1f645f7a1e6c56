"""The JSON the read, job, search, health and event routes answer: one pydantic model per shape.

Each model is the single description of its shape: the routes declare it as ``response_model`` (so
``/docs`` and ``/openapi.json`` name every field), build their answers from ORM rows with it
(``from_attributes``), and the SSE stream serialises its ``data:`` with it. Field names and order
are the ones the API has always sent; ``UtcTime`` keeps the ``+00:00`` suffix it has always had.

One module per area (``calls``, ``units``, ``search``, ``jobs``, ``alerts``, ``health``,
``events``); every public name is importable from here.
"""

from rdio_api.schemas.alerts import (
    AlertActionOut,
    AlertAttemptOut,
    AlertDeliveryOut,
    AlertDeliveryPage,
    AlertRuleList,
    AlertRuleOut,
)
from rdio_api.schemas.base import UtcTime
from rdio_api.schemas.calls import (
    LARGE_FIELDS,
    MAX_UNITS_SHOWN,
    CallDetail,
    CallOut,
    CallPage,
    SegmentOut,
    SystemList,
    SystemOut,
    TalkgroupList,
    TalkgroupOut,
    ToneOut,
    TransmissionOut,
    UnitRef,
    WordOut,
)
from rdio_api.schemas.events import EVENT_PAYLOADS, CallAnalyzed, CallCreated, TranscriptUpdated
from rdio_api.schemas.health import (
    Health,
    HealthCheck,
    Readiness,
    TranscriptionHealth,
    WorkerList,
    WorkerOut,
)
from rdio_api.schemas.jobs import (
    BackfillIn,
    BackfillOut,
    CallTranscription,
    JobOut,
    JobRequest,
    JobSummary,
    QueueStatus,
)
from rdio_api.schemas.search import SearchPage, SearchResult
from rdio_api.schemas.units import UnitList, UnitOut

__all__ = [
    "EVENT_PAYLOADS",
    "LARGE_FIELDS",
    "MAX_UNITS_SHOWN",
    "AlertActionOut",
    "AlertAttemptOut",
    "AlertDeliveryOut",
    "AlertDeliveryPage",
    "AlertRuleList",
    "AlertRuleOut",
    "BackfillIn",
    "BackfillOut",
    "CallAnalyzed",
    "CallCreated",
    "CallDetail",
    "CallOut",
    "CallPage",
    "CallTranscription",
    "Health",
    "HealthCheck",
    "JobOut",
    "JobRequest",
    "JobSummary",
    "QueueStatus",
    "Readiness",
    "SearchPage",
    "SearchResult",
    "SegmentOut",
    "SystemList",
    "SystemOut",
    "TalkgroupList",
    "TalkgroupOut",
    "ToneOut",
    "TranscriptUpdated",
    "TranscriptionHealth",
    "TransmissionOut",
    "UnitList",
    "UnitOut",
    "UnitRef",
    "UtcTime",
    "WordOut",
    "WorkerList",
    "WorkerOut",
]
