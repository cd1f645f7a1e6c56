"""A call's fields, declared once: every shape of a call derives from these classes.

The shapes, from the upload to the answers:

- :class:`CallData`: what an upload (or an importer) says about a call, parsed (rdio_api.call_fields);
  its :meth:`~CallFields.columns` are the calls table's row (rdio_api.ingest).
- :class:`StoredCall`: a stored call as alerts and the search index read it, from an ORM row
  (``from_attributes``) or from the row the writer just inserted (no throwaway ORM object).
- ``rdio_api.schemas.CallOut`` / ``CallDetail``: the API's answers; ``rdio_core.alerts.document.AlertCall``:
  a webhook's call. They inherit :class:`CallSummary` (and ``CallDetail`` :class:`CallLists`).

A text field a recorder sends carries :class:`Sent` (its upload name and stored length): the upload
parser reads it and the upload route's OpenAPI documents it from that alone. Adding such a field
is this file, the ORM column (``rdio_core.models``) and a migration.

The bounded fields (:class:`CallSummary`) are on every shape; the lists that grow with a call's length
(:class:`CallLists`: 20 trunk-recorder calls with 900 KB of srcList/meta made a 31.7 MB list page) are
only on the detail route, the row and the upload. Pydantic orders fields from the most basic class of
the MRO, so a shape lists its bases most-derived-last: ``class CallDetail(CallLists, CallOut)`` puts
the lists after the summary, which is the order the API has always sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from rdio_core.bounds import UtcTime


@dataclass(frozen=True)
class Sent:
    """A text field as a recorder sends it: its name in the upload form, and the length it is
    stored up to (the column's; a longer value is cut, never refused: SDRTrunk does not retry)."""

    name: str
    limit: int = 200


class CallSummary(BaseModel):
    """The fields of a call bounded in size: in every shape, list items included. Every one is
    present in a stored call (null when the recorder did not send it)."""

    model_config = ConfigDict(from_attributes=True)

    # The ORM column is system_id (a foreign key); every shape says system.
    system: int = Field(validation_alias=AliasChoices("system", "system_id"))
    talkgroup: int
    date_time: UtcTime
    source: int | None
    frequency: int | None
    patches: list[Any] | None
    talkgroup_label: Annotated[str | None, Sent("talkgroupLabel")]
    talkgroup_group: Annotated[str | None, Sent("talkgroupGroup")]
    talkgroup_tag: Annotated[str | None, Sent("talkgroupTag")]
    talkgroup_name: Annotated[str | None, Sent("talkgroupName")]
    system_label: Annotated[str | None, Sent("systemLabel")]
    talker_alias: Annotated[str | None, Sent("talkerAlias")]
    site: Annotated[str | None, Sent("site", 100)]
    audio_name: Annotated[str | None, Sent("audioName", 255)]
    audio_type: Annotated[str | None, Sent("audioType", 100)]

    def talkgroup_title(self) -> str:
        """How a person names the talkgroup: its label, else its name, else ``TG <id>`` (the
        console's ``talkgroupName`` in dom.js is the same rule)."""
        return self.talkgroup_label or self.talkgroup_name or f"TG {self.talkgroup}"

    def search_labels(self) -> list[Any]:
        """What the call is found by besides its transcript (rdio_core.search), in SEARCHED order."""
        return [getattr(self, name) for name in SEARCHED]


class CallLists(BaseModel):
    """A call's fields that grow with its length: one entry per frequency hop / key-up."""

    model_config = ConfigDict(from_attributes=True)

    frequencies: list[Any] | None
    sources: list[Any] | None


class CallFields(CallLists, CallSummary):
    """Every field a recorder's upload fills: the calls table's columns of the call itself."""

    def columns(self) -> dict[str, Any]:
        """These fields as the calls table's columns (a row for a Core INSERT)."""
        row = self.model_dump(include=_FIELD_NAMES)
        row["system_id"] = row.pop("system")
        return row


_FIELD_NAMES = set(CallFields.model_fields)

SEARCHED = ("system_label", "talkgroup_label", "talkgroup_name", "talkgroup_tag", "talker_alias", "source")
"""The fields the search index holds (with the radio ids and tags of ``sources``); the order is the
one a label snippet reads in."""

SENT_TEXT: dict[str, Sent] = {
    name: next(m for m in field.metadata if isinstance(m, Sent))
    for name, field in CallFields.model_fields.items()
    if any(isinstance(m, Sent) for m in field.metadata)
}
"""Field name -> how a recorder sends it, for every free-text field, in declaration order."""


class StoredCall(CallFields):
    """A stored call as the code after the upload reads it: alert rules and documents, the search
    index. Built from an ORM row or from the row the writer inserted plus its id."""

    id: int
    duration_seconds: float | None
    tones: list[Any] | None = Field(description="null: not analysed yet; []: analysed, none found")
    meta: dict[str, Any] | None = Field(description="the stored meta: import origin, ignored fields, ...")


class CallData(CallFields):
    """A call as an upload or an importer describes it, parsed; naive-UTC ``date_time``."""

    # trunk-recorder's own JSON, less what has a column (rdio_api.call_fields); stored in meta.
    meta: dict[str, Any] | None = None
    ignored: dict[str, str] = Field(default_factory=dict)  # fields dropped as unreadable, and why
    date_time_sent: str | None = None  # the dateTime as sent, for the note hold_to_clock leaves

    @model_validator(mode="before")
    @classmethod
    def _absent_is_null(cls, data: Any) -> Any:
        """A field the recorder did not send is null, as is one a spooled record predates
        (rdio_api.spool reads records written by the version before)."""
        if isinstance(data, dict):
            return {**dict.fromkeys(_FIELD_NAMES - _NEVER_ABSENT), **data}
        return data


# An upload without these is refused (rdio_api.call_fields): every call has them.
_NEVER_ABSENT = frozenset({"system", "talkgroup", "date_time"})
