"""rdio_core.calls.shapes: one field set, and every shape of a call carries it.

A field declared on the field set reaches the upload parser, the upload route's OpenAPI, the row the
writer inserts, the API's answers and the alert document without being written again; these tests
fail when a shape stops deriving from it or a free-text field loses its column."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import String

from rdio_api.call_fields import from_rdio_fields
from rdio_api.schemas import CallDetail, CallOut
from rdio_api.upload_schema import CALL_UPLOAD_REQUEST
from rdio_core import db
from rdio_core.alerts.document import AlertCall, build, notification
from rdio_core.alerts.models import AlertDelivery
from rdio_core.calls import SENT_TEXT, CallData, CallFields, CallLists, CallSummary, StoredCall
from rdio_core.models import Call, System
from rdio_core.settings import Settings
from tests.test_upload import fresh_system

SUMMARY = list(CallSummary.model_fields)
LISTS = list(CallLists.model_fields)


def upload_fields(**extra: str) -> dict[str, str]:
    return {"system": "7", "talkgroup": "100", "dateTime": "1764900000", **extra}


@pytest.mark.parametrize("shape", [CallOut, CallDetail, AlertCall, CallData, StoredCall])
def test_every_shape_has_the_summary_fields_in_their_order(shape):
    fields = list(shape.model_fields)
    assert [name for name in fields if name in SUMMARY] == SUMMARY


@pytest.mark.parametrize("shape", [CallDetail, CallData, StoredCall])
def test_the_shapes_that_carry_the_lists_have_them(shape):
    assert set(LISTS) <= set(shape.model_fields)


def test_list_items_leave_the_lists_out():
    assert not set(LISTS) & set(CallOut.model_fields)
    assert not set(LISTS) & set(AlertCall.model_fields)


def test_every_field_is_a_column_and_every_text_field_fits_its_column():
    columns = Call.__table__.c
    row = from_rdio_fields(upload_fields()).columns()
    assert set(row) == {"system_id", *(name for name in CallFields.model_fields if name != "system")}
    assert set(row) <= set(columns.keys())
    for name, sent in SENT_TEXT.items():
        column_type = columns[name].type
        assert isinstance(column_type, String) and column_type.length == sent.limit, name


def test_every_text_field_is_read_cut_and_documented():
    sent_values = {sent.name: f"{name} " + "x" * 300 for name, sent in SENT_TEXT.items()}
    call = from_rdio_fields(upload_fields(**sent_values))
    documented = CALL_UPLOAD_REQUEST["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for name, sent in SENT_TEXT.items():
        value = getattr(call, name)
        assert value == sent_values[sent.name][: sent.limit], name
        assert documented[sent.name]["description"] == f"Stored up to {sent.limit} characters."
    assert from_rdio_fields(upload_fields()).talker_alias is None


def test_a_spooled_record_from_before_a_field_existed_still_reads():
    call = from_rdio_fields(upload_fields(talkerAlias="Engine 7", site="North"))
    record = json.loads(json.dumps(call.model_dump(mode="json")))
    assert record["date_time"].endswith("+00:00")
    del record["site"]  # as if written by a version without the field
    back = CallData.model_validate(record)
    assert back.site is None and back.talker_alias == "Engine 7"
    assert back.date_time == call.date_time and back.date_time.tzinfo is None
    with pytest.raises(ValueError, match="talkgroup"):
        CallData.model_validate({k: v for k, v in record.items() if k != "talkgroup"})


def test_alerts_read_the_same_call_at_upload_as_from_the_stored_row(db_engine):
    """At upload the writer builds the StoredCall from the row it inserted; later stages read the ORM
    row. Both must be the same call (an alert document at upload once came from a throwaway ORM
    object)."""
    db.upgrade(db_engine)
    system = fresh_system()
    call = from_rdio_fields(
        upload_fields(system=str(system), talkgroupLabel="Fire Dispatch", talkerAlias="E7", sources="[5, 6]")
    )
    row = {
        **call.columns(),
        "audio_path": "a.mp3",
        "audio_sha256": "0" * 64,
        "audio_bytes": 3,
        "audio_mime": "audio/mpeg",
        "duration_seconds": 2.5,
        "client_kind": "test",
        "meta": None,
    }
    with db.make_session_factory(db_engine)() as session:
        session.add(System(id=system))
        session.flush()
        stored_row = Call(**row)
        session.add(stored_row)
        session.commit()
        at_upload = StoredCall.model_validate({**row, "id": stored_row.id, "tones": None})
        assert StoredCall.model_validate(stored_row) == at_upload
        session.delete(stored_row)  # retention tests count every old call of the shared database
        session.commit()
    assert at_upload.system == system and at_upload.sources == [5, 6]
    assert at_upload.search_labels() == [None, "Fire Dispatch", None, None, "E7", 5]  # source: srcList[0]


def test_the_alert_document_carries_the_summary_and_names_the_talkgroup_once():
    stored = StoredCall.model_validate(
        {
            **from_rdio_fields(upload_fields(talkgroupName="Fireground", site="North")).columns(),
            "id": 41,
            "duration_seconds": 3.0,
            "tones": None,
            "meta": None,
        }
    )
    delivery = AlertDelivery(
        id=1, rule="r", stage="upload", matched_text=None, created_at=datetime(2026, 1, 1)
    )
    doc = build(Settings(), delivery, stored, [], None)
    body = json.loads(doc.model_dump_json())["call"]
    assert (
        body["site"] == "North" and body["system"] == 7 and body["audio_url"].endswith("/api/calls/41/audio")
    )
    assert body["date_time"] == datetime.fromtimestamp(1764900000, UTC).isoformat()
    assert notification(doc)[0] == "r: Fireground"  # no label: the name
    assert stored.talkgroup_title() == "Fireground"
    assert stored.model_copy(update={"talkgroup_name": None}).talkgroup_title() == "TG 100"
    assert stored.model_copy(update={"talkgroup_label": "Dispatch"}).talkgroup_title() == "Dispatch"
