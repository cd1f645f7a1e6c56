"""The alert outbox on a real database (SQLite, or PostgreSQL with RDIO_TEST_DATABASE_URL): rows
written in the caller's transaction, once per call, cooldown taken safely by concurrent writers,
attempts recorded and bounded, no database work at all when no rule wants the stage."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, func, select

from rdio_core import db
from rdio_core.alerts import outbox
from rdio_core.alerts.models import AlertAttempt, AlertDelivery, DeliveryStatus
from rdio_core.alerts.outbox import fire_alerts
from rdio_core.calls import StoredCall
from rdio_core.jobs import ClaimOutcome
from rdio_core.models import Call, System, utcnow
from rdio_core.settings import Settings
from tests.test_upload import fresh_system

HOOK = {"webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s"}}


@pytest.fixture(scope="module")
def factory(db_engine):
    db.upgrade(db_engine)
    return db.make_session_factory(db_engine)


def settings(*rules: dict) -> Settings:
    return Settings(alerts={"rules": list(rules)})


def stored(session, call_id: int) -> StoredCall:
    """The call as alert rules read it (rdio_core.calls.StoredCall)."""
    return StoredCall.model_validate(session.get_one(Call, call_id))


def make_call(factory, system: int, talkgroup: int = 100, source: int | None = 7, tones=None) -> int:
    with factory() as session:
        if session.get(System, system) is None:
            session.add(System(id=system))
            session.flush()
        call = Call(
            system_id=system,
            talkgroup=talkgroup,
            date_time=utcnow(),
            source=source,
            tones=tones,
            audio_path="x.mp3",
            audio_sha256="0" * 64,
            audio_bytes=1,
            audio_mime="audio/mpeg",
            client_kind="test",
        )
        session.add(call)
        session.commit()
        return call.id


def fire(factory, cfg: Settings, call_id: int, stage="transcript", text: str | None = None) -> list[int]:
    with factory() as session:
        ids = fire_alerts(session, cfg, stored(session, call_id), stage, text)
        session.commit()
    return ids


def deliveries(factory, call_id: int) -> list[AlertDelivery]:
    with factory() as session:
        return list(session.execute(select(AlertDelivery).where(AlertDelivery.call_id == call_id)).scalars())


def test_matching_rule_writes_one_pending_delivery_per_action(factory):
    system = fresh_system()
    call_id = make_call(factory, system)
    two = {"name": "fire", "words": ["fire"], "actions": [HOOK, {"apprise": "json://127.0.0.1:9/x"}]}
    cfg = settings(two, {"name": "other", "words": ["smoke"], "actions": [HOOK]})
    ids = fire(factory, cfg, call_id, text="Working fire on Main")
    rows = deliveries(factory, call_id)
    assert sorted(ids) == sorted(r.id for r in rows) and len(rows) == 2
    assert {(r.rule, r.action_index, r.action_kind, r.status) for r in rows} == {
        ("fire", 0, "webhook", "pending"),
        ("fire", 1, "apprise", "pending"),
    }
    assert all(r.matched_text == "fire" and r.transcript == "Working fire on Main" for r in rows)
    assert "s" not in {r.target for r in rows}  # targets only, never secrets
    # The same call again (a re-transcription, a second tone analysis): no second alert.
    assert fire(factory, cfg, call_id, text="fire again") == []
    assert len(deliveries(factory, call_id)) == 2


def test_deliveries_belong_to_the_callers_transaction(factory):
    call_id = make_call(factory, fresh_system())
    cfg = settings({"name": "tg", "talkgroups": [100], "actions": [HOOK]})
    with factory() as session:
        assert fire_alerts(session, cfg, stored(session, call_id), "upload")
        session.rollback()
    assert deliveries(factory, call_id) == []


def test_disabled_rules_and_other_stages_do_not_fire(factory):
    call_id = make_call(factory, fresh_system())
    cfg = settings(
        {"name": "off", "enabled": False, "talkgroups": [100], "actions": [HOOK]},
        {"name": "text", "words": ["fire"], "actions": [HOOK]},
    )
    assert fire(factory, cfg, call_id, "upload") == []
    assert fire(factory, cfg, call_id, "tones") == []
    assert deliveries(factory, call_id) == []


def test_tone_rule_reads_the_stored_tones(factory):
    page = [{"kind": "two_tone", "frequencies": [1002.3, 1270.7], "start": 0, "end": 3, "name": "Station 7"}]
    cfg = settings({"name": "st7", "tones": ["Station 7"], "actions": [HOOK]})
    assert fire(factory, cfg, make_call(factory, fresh_system(), tones=page), "tones")
    assert fire(factory, cfg, make_call(factory, fresh_system(), tones=[]), "tones") == []


def test_cooldown_is_per_rule_and_talkgroup(factory):
    system = fresh_system()
    cfg = settings({"name": "cool", "words": ["fire"], "cooldown_seconds": 300, "actions": [HOOK]})
    first = make_call(factory, system, talkgroup=100)
    assert fire(factory, cfg, first, text="fire")
    assert fire(factory, cfg, make_call(factory, system, talkgroup=100), text="fire") == []
    assert fire(factory, cfg, make_call(factory, system, talkgroup=200), text="fire")  # its own clock
    other = settings({"name": "cool-2", "words": ["fire"], "cooldown_seconds": 300, "actions": [HOOK]})
    assert fire(factory, other, make_call(factory, system, talkgroup=100), text="fire")  # another rule
    no_wait = settings({"name": "cool", "words": ["fire"], "cooldown_seconds": 0, "actions": [HOOK]})
    assert fire(factory, no_wait, make_call(factory, system, talkgroup=100), text="fire")


def test_concurrent_firings_respect_the_cooldown(factory):
    """Eight writers finish calls of one talkgroup at once: exactly one alert."""
    system = fresh_system()
    cfg = settings({"name": "race", "talkgroups": [100], "cooldown_seconds": 600, "actions": [HOOK]})
    calls = [make_call(factory, system) for _ in range(8)]
    start = threading.Barrier(len(calls))
    fired: list[list[int]] = []
    errors: list[BaseException] = []

    def worker(call_id: int) -> None:
        try:
            start.wait()
            fired.append(fire(factory, cfg, call_id, "upload"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(1 for ids in fired if ids) == 1


def test_no_rule_for_the_stage_means_no_database_work(factory, db_engine):
    call_id = make_call(factory, fresh_system())
    cfg = settings({"name": "text only", "words": ["fire"], "actions": [HOOK]})
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with factory() as session:
        call = stored(session, call_id)
        event.listen(db_engine, "before_cursor_execute", count)
        try:
            assert fire_alerts(session, cfg, call, "upload") == []
            assert fire_alerts(session, settings(), call, "transcript", "fire") == []
        finally:
            event.remove(db_engine, "before_cursor_execute", count)
    assert statements == []


def test_attempts_are_recorded_and_bounded(factory):
    call_id = make_call(factory, fresh_system())
    (delivery_id,) = fire(
        factory, settings({"name": "b", "talkgroups": [100], "actions": [HOOK]}), call_id, "upload"
    )
    first = outbox.claim(factory, delivery_id, lease_seconds=60, max_attempts=2)
    assert first.outcome is ClaimOutcome.CLAIMED and first.call is not None
    # While the attempt is in flight, a duplicate message finds it busy (no double send).
    assert outbox.claim(factory, delivery_id, 60, 2).outcome is ClaimOutcome.BUSY
    assert first.delivery is not None
    failed = outbox.AttemptResult(False, 12.5, 500, "HTTP 500: boom")
    assert outbox.settle(factory, first.delivery, failed, retry_in=0.0) is DeliveryStatus.PENDING
    second = outbox.claim(factory, delivery_id, 60, 2)
    assert second.outcome is ClaimOutcome.CLAIMED and second.delivery is not None
    assert outbox.settle(factory, second.delivery, failed, retry_in=0.0) is DeliveryStatus.PENDING
    # Out of attempts: the next claim ends it as failed with the last error.
    assert outbox.claim(factory, delivery_id, 60, 2).outcome is ClaimOutcome.GAVE_UP
    (row,) = deliveries(factory, call_id)
    assert row.status == "failed" and row.attempts == 2 and "HTTP 500: boom" in (row.error or "")
    with factory() as session:
        codes = session.execute(
            select(AlertAttempt.status_code).where(AlertAttempt.delivery_id == delivery_id)
        ).scalars()
        assert list(codes) == [500, 500]
    assert outbox.claim(factory, delivery_id, 60, 2).outcome is ClaimOutcome.FINAL


def test_sweeper_republishes_only_what_the_broker_lost(factory):
    call_id = make_call(factory, fresh_system())
    (delivery_id,) = fire(
        factory, settings({"name": "s", "talkgroups": [100], "actions": [HOOK]}), call_id, "upload"
    )
    now = utcnow()
    with factory() as session:
        overdue = session.execute(
            select(func.count()).select_from(AlertDelivery).where(AlertDelivery.status == "pending")
        ).scalar_one()
        # The broker holds as many messages as there are overdue deliveries: nothing was lost.
        assert outbox.sweep_candidates(session, now, now, waiting=overdue) == []
        # It holds fewer: republish them (this one among them).
        assert delivery_id in outbox.sweep_candidates(session, now, now, waiting=0)
        session.commit()
