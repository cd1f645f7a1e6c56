"""The tone analysis task and the transcription worker's use of tones, against the real database,
real audio files and (for the mixed call) the real Whisper model."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from rdio_core import jobs
from rdio_core.alerts.models import AlertDelivery
from rdio_core.db import make_session_factory, upgrade
from rdio_core.models import Call, Event, EventKind, JobStatus, System, TranscriptionJob, utcnow
from rdio_core.pipeline import STALE_AFTER_SECONDS, analysis_candidates
from rdio_core.settings import Settings
from rdio_core.storage import AudioStore
from rdio_tasks.analyze import analyze
from rdio_tasks.context import WorkerContext
from rdio_tasks.tasks import run_job
from tests import tone_signals as ts

STATION_7 = (1002.3, 1270.7)


def make_settings(root: Path, database_url: str, **extra) -> Settings:  # type: ignore[no-untyped-def]
    config = {
        "data_dir": str(root),
        "database_url": database_url,
        "transcription": {"enabled": True, "min_audio_seconds": 0.5, "model": "tiny.en"},
        "tones": {"sets": [{"name": "Station 7", "tones": list(STATION_7), "kind": "two_tone"}]},
        "alerts": {
            "rules": [
                {
                    "name": "station 7 paged",
                    "tones": ["Station 7"],
                    "actions": [{"webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s"}}],
                }
            ]
        },
        **extra,
    }
    return Settings(**config)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, db_engine, database_url) -> WorkerContext:
    root = tmp_path_factory.mktemp("analyze")
    upgrade(db_engine)
    settings = make_settings(root, database_url)
    return WorkerContext(
        settings, db_engine, make_session_factory(db_engine), AudioStore(root / "audio"), os.getpid()
    )


def store_call(ctx: WorkerContext, audio: bytes, suffix: str = ".mp3", received_ago: float = 0.0) -> int:
    """A call with ``audio`` in the store and a pending transcription job; the call's id."""
    name = f"{secrets.token_hex(6)}{suffix}"
    ctx.store.root.mkdir(parents=True, exist_ok=True)
    (ctx.store.root / name).write_bytes(audio)
    with ctx.factory() as session:
        system = int.from_bytes(secrets.token_bytes(3), "big")
        session.add(System(id=system, label="tones"))
        session.flush()
        call = Call(
            system_id=system,
            talkgroup=1,
            date_time=utcnow(),
            audio_path=name,
            audio_sha256="0" * 64,
            audio_bytes=len(audio),
            audio_mime="audio/mpeg",
            client_kind="test",
            received_at=utcnow() - timedelta(seconds=received_ago),
        )
        session.add(call)
        session.flush()
        jobs.create_job(session, call.id, priority=3)
        session.commit()
        return call.id


def page_call(tail: np.ndarray | None = None) -> bytes:
    parts = [ts.silence(0.3), ts.two_tone(*STATION_7), ts.silence(0.2)]
    if tail is not None:
        parts.append(tail)
    return ts.mp3(ts.with_noise(np.concatenate(parts), 25))


def the_call(ctx: WorkerContext, call_id: int) -> Call:
    with ctx.factory() as session:
        call = session.get(Call, call_id)
        assert call is not None
        return call


def job_of(ctx: WorkerContext, call_id: int) -> TranscriptionJob:
    with ctx.factory() as session:
        return session.execute(
            select(TranscriptionJob).where(TranscriptionJob.call_id == call_id)
        ).scalar_one()


def test_page_is_stored_named_and_fires_its_rule_once(ctx):
    call_id = store_call(ctx, page_call())
    assert the_call(ctx, call_id).analyzed_at is None
    outcome = analyze(ctx, call_id)
    assert outcome["status"] == "analyzed" and outcome["tones"] == 1 and len(outcome["alerts"]) == 1
    call = the_call(ctx, call_id)
    assert call.analyzed_at is not None
    (tone,) = call.tones or []
    assert set(tone) == {"kind", "frequencies", "start", "end", "name"}
    assert tone["kind"] == "two_tone" and tone["name"] == "Station 7"
    assert [abs(f - want) < 0.5 for f, want in zip(tone["frequencies"], STATION_7, strict=True)] == [
        True,
        True,
    ]
    assert abs(tone["start"] - 0.3) < 0.06 and abs(tone["end"] - 4.3) < 0.06
    with ctx.factory() as session:
        deliveries = (
            session.execute(select(AlertDelivery).where(AlertDelivery.call_id == call_id)).scalars().all()
        )
        events = session.execute(select(Event.kind).where(Event.call_id == call_id)).scalars().all()
    assert [(d.rule, d.stage, d.id) for d in deliveries] == [
        ("station 7 paged", "tones", outcome["alerts"][0])
    ]
    assert events == [EventKind.CALL_ANALYZED]
    # A redelivered message (or a sweeper republish) changes nothing and fires nothing.
    assert analyze(ctx, call_id)["status"] == "done"
    with ctx.factory() as session:
        assert (
            len(session.execute(select(AlertDelivery.id).where(AlertDelivery.call_id == call_id)).all()) == 1
        )
        assert len(session.execute(select(Event.id).where(Event.call_id == call_id)).all()) == 1


def test_speech_is_analysed_as_no_tones(ctx):
    call_id = store_call(ctx, (ts.CORPUS / "audio" / "jfk_radio.mp3").read_bytes())
    assert analyze(ctx, call_id) == {"call_id": call_id, "status": "analyzed", "tones": 0, "alerts": []}
    call = the_call(ctx, call_id)
    assert call.tones == [] and call.analyzed_at is not None
    with ctx.factory() as session:
        assert session.execute(select(Event.id).where(Event.call_id == call_id)).all() == []


def test_unreadable_audio_is_analysed_once_as_no_tones(ctx):
    call_id = store_call(ctx, b"not audio at all", suffix=".mp3")
    assert analyze(ctx, call_id)["status"] == "analyzed"
    assert the_call(ctx, call_id).tones == []
    assert analyze(ctx, 10**12)["status"] == "missing"


def test_disabled_leaves_calls_unanalysed(ctx):
    call_id = store_call(ctx, page_call())
    off = WorkerContext(
        ctx.settings.model_copy(update={"tones": ctx.settings.tones.model_copy(update={"enabled": False})}),
        ctx.engine,
        ctx.factory,
        ctx.store,
        ctx.pid,
    )
    assert analyze(off, call_id)["status"] == "disabled"
    assert the_call(ctx, call_id).tones is None


def test_sweep_takes_stale_unanalysed_calls_within_the_age_bound(ctx):
    fresh = store_call(ctx, page_call())
    stale = store_call(ctx, page_call(), received_ago=STALE_AFTER_SECONDS + 30)
    ancient = store_call(ctx, page_call(), received_ago=ctx.settings.tones.sweep_max_age_seconds + 60)
    done = store_call(ctx, page_call(), received_ago=STALE_AFTER_SECONDS + 30)
    analyze(ctx, done)
    with ctx.factory() as session:
        picked = set(analysis_candidates(session, ctx.settings, utcnow()))
    assert stale in picked
    assert not picked & {fresh, ancient, done}


def test_tone_only_call_is_skipped_with_the_tones_as_reason(ctx):
    """Analysed first (stored tones are used) or not (the worker detects): skipped either way, before
    any model is loaded."""
    for analysed in (True, False):
        call_id = store_call(ctx, page_call())
        if analysed:
            analyze(ctx, call_id)
        job = job_of(ctx, call_id)
        outcome = run_job(ctx, job.id, "test-worker")
        assert outcome.status == JobStatus.SKIPPED
        job = job_of(ctx, call_id)
        assert job.status == JobStatus.SKIPPED and job.text is None
        assert job.error is not None
        assert job.error.startswith(
            "only dispatch tones, no speech: two-tone 1002.3/1270.7 Hz (Station 7) at 0.3-4.3 s"
        )


@pytest.mark.worker
def test_mixed_call_whisper_hears_no_tones_and_times_stay_on_the_call(ctx):
    """A page, then speech: the transcript is the speech, its segments start after the page on the
    stored audio's clock, and the engine's own tone finder saw no tone in what it was given."""
    pytest.importorskip("whisperx")
    speech = ts.speech()
    call_id = store_call(ctx, page_call(speech))
    analyze(ctx, call_id)
    job = job_of(ctx, call_id)
    outcome = run_job(ctx, job.id, "test-worker")
    assert outcome.status == JobStatus.COMPLETED, outcome
    job = job_of(ctx, call_id)
    words = (job.text or "").lower()
    assert "fellow americans" in words and "what your country can do for you" in words
    assert job.segments and min(seg["start"] for seg in job.segments) >= 4.3
    assert max(seg["end"] for seg in job.segments) <= 4.5 + speech.size / ts.RATE + 0.1
    assert job.audio_seconds == pytest.approx(4.5 + speech.size / ts.RATE, abs=0.1)
    pre = (job.result or {})["preprocessing"]
    (cut,) = pre["tones_cut"]
    assert cut[0] == pytest.approx(0.25, abs=0.06) and cut[1] == pytest.approx(4.35, abs=0.06)
    assert pre.get("tones", []) == []  # the radio pipeline's notch found nothing left to remove
