"""rdio_core.calls.CallFilter: each condition selects exactly the calls it describes, on the database
under test; ``has_audio`` follows retention, which deletes the file and leaves ``audio_bytes`` alone."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select

from rdio_core import db, jobs
from rdio_core.calls import CallFilter
from rdio_core.models import Call, CallTransmission, JobStatus, System
from rdio_core.retention import remove_old_audio
from rdio_core.storage import AudioStore
from tests.helpers import bare_call
from tests.test_upload import fresh_system

# Early enough that retention's cut-off (START + 30 min, applied to the whole test database) reaches
# no other test's calls: recorders send nothing from 1970.
START = datetime(1970, 1, 5, 12, 0, 0)


@pytest.fixture(scope="module")
def factory(db_engine):
    db.upgrade(db_engine)
    return db.make_session_factory(db_engine)


@pytest.fixture
def calls(factory, tmp_path):
    """Five calls of a fresh system, an hour apart (oldest first); the oldest's audio deleted by
    retention. Yields (system, store, {name: call id}), then deletes them."""
    system = fresh_system()
    store = AudioStore(tmp_path / "audio")
    plan = {
        # name: (talkgroup, radio heard, transcript text or None)
        "old": (100, None, "engine one respond"),
        "unit": (100, 4242, None),
        "silent": (200, None, ""),  # a completed job that heard nothing: no transcript
        "said": (200, 4242, "medic two"),
        "new": (300, None, None),
    }
    ids: dict[str, int] = {}
    with factory() as session:
        session.add(System(id=system))
        session.flush()
        for hour, (name, (talkgroup, unit, text)) in enumerate(plan.items()):
            when = START + timedelta(hours=hour)
            relative = store.relative_path(when, system, talkgroup, "mp3")
            store.write(relative, b"ID3 " + name.encode())
            call = bare_call(session, system, talkgroup, when, audio_path=relative, audio_bytes=8)
            ids[name] = call.id
            if unit is not None:
                session.add(
                    CallTransmission(call_id=call.id, seq=0, offset_seconds=0.0, unit=unit, origin="source")
                )
            if text is not None:
                job = jobs.create_job(session, call.id, priority=3)
                job.status, job.text = JobStatus.COMPLETED, text
        session.commit()
    # Real retention: the file goes, the row is marked; cut off between "old" and "unit".
    assert remove_old_audio(factory, store, START + timedelta(minutes=30)) >= 1
    yield system, store, ids
    # Gone again: retention tests count every old call of the shared test database.
    with factory() as session:
        session.execute(delete(Call).where(Call.system_id == system))
        session.commit()


def matching(factory, system: int, **conditions) -> list[int]:
    stmt = CallFilter(system=system, **conditions).apply(select(Call.id)).order_by(Call.id)
    with factory() as session:
        return list(session.execute(stmt).scalars())


def test_each_condition_selects_what_it_says(factory, calls):
    system, _, ids = calls
    every = sorted(ids.values())
    assert matching(factory, system) == every
    assert matching(factory, system, talkgroup=200) == [ids["silent"], ids["said"]]
    assert matching(factory, system, since=START + timedelta(hours=3)) == [ids["said"], ids["new"]]
    assert matching(factory, system, until=START + timedelta(hours=1)) == [ids["old"]]  # until excluded
    assert matching(factory, system, unit=4242) == [ids["unit"], ids["said"]]
    assert matching(factory, system, has_transcript=True) == [ids["old"], ids["said"]]
    assert matching(factory, system, has_transcript=False) == [ids["unit"], ids["silent"], ids["new"]]
    assert matching(factory, system, talkgroup=200, has_transcript=True, unit=4242) == [ids["said"]]
    assert matching(factory, fresh_system()) == []


def test_has_audio_follows_retention_not_audio_bytes(factory, calls):
    system, store, ids = calls
    with factory() as session:
        old = session.get_one(Call, ids["old"])
        assert old.audio_removed_at is not None and old.audio_bytes == 8  # the size is as uploaded
        assert not store.absolute(old.audio_path).exists()
    assert matching(factory, system, has_audio=False) == [ids["old"]]
    assert matching(factory, system, has_audio=True) == sorted(set(ids.values()) - {ids["old"]})
    # What retention selects next time: calls still holding audio, before the cut-off.
    assert matching(factory, system, has_audio=True, until=START + timedelta(hours=2)) == [ids["unit"]]


def test_the_filter_refuses_a_condition_it_does_not_know():
    with pytest.raises(ValueError, match="has_vidio"):
        CallFilter.model_validate({"has_vidio": True})
